"""``pipelogic keys``: make and list CurveZMQ key pairs (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

import click

from pipelogic.keys import create_broker_key, create_key, list_keys

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Make and list CurveZMQ keys. A key folder holds the broker's pair, one pair per
    worker (authorised for named vertices) and one per operator (status, config set,
    tap). Revoke a key by deleting its two files: the broker rereads the folder within a
    second and drops that key's connections."""


@keys.command("init")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option(
    "--pipeline",
    "pipeline_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Also make a worker key for each component vertex of this pipeline, and an operator key.",
)
@click.option("--operator", default="operator", show_default=True, help="The operator key's name (with --pipeline).")
def init(folder: str, pipeline_file: str | None, operator: str) -> None:
    """Make a key folder: the broker's pair (and, with --pipeline, everything a run needs)."""
    d = Path(folder)
    made = [create_broker_key(d)]
    if pipeline_file:
        from pipelogic.pipeline import load_pipeline

        pipeline = load_pipeline(pipeline_file)
        for name, v in pipeline.vertices.items():
            if v.kind == "component":
                made.append(create_key(d, "workers", name, [name]))
        made.append(create_key(d, "operators", operator))
    for f in made:
        click.echo(f"made {f} (secret: {f.name}_secret, mode 0600)")


@keys.command("worker")
@click.argument("folder", type=click.Path(file_okay=False))
@click.argument("name")
@click.option("--vertex", "vertices", multiple=True, help="A vertex this key may run (repeat; default: NAME).")
def worker(folder: str, name: str, vertices: tuple[str, ...]) -> None:
    """Make a worker's pair, authorised for the named vertices."""
    f = create_key(Path(folder), "workers", name, list(vertices) or [name])
    click.echo(f"made {f} for vertex {', '.join(vertices or (name,))}")


@keys.command("operator")
@click.argument("folder", type=click.Path(file_okay=False))
@click.argument("name")
def operator_key(folder: str, name: str) -> None:
    """Make an operator's pair (status, config set, tap)."""
    click.echo(f"made {create_key(Path(folder), 'operators', name)}")


@keys.command("list")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
def list_(folder: str) -> None:
    """List the public keys of a key folder: role, name, what each may do."""
    for k in list_keys(Path(folder)):
        what = (
            f"vertices {', '.join(k.vertices)}"
            if k.role == "worker"
            else ("status, config set, tap" if k.role == "operator" else "the broker")
        )
        click.echo(f"{k.role:8}  {k.name:20}  {k.public.decode()}  {what}")
