"""The ``pipelogic`` command line (also ``python -m pipelogic``)."""

from __future__ import annotations

import json
import logging
import os
import runpy
import sys
from pathlib import Path

import click
import yaml

from pipelogic.errors import DefinitionError, PipelogicError, SnapshotCorrupt
from pipelogic.transport import DEFAULT_BROKER

EXIT_SNAPSHOT_CORRUPT = 3

__all__ = ["main"]

_BROKER_HELP = "Broker control endpoint (default: $PIPELOGIC_BROKER, else tcp://127.0.0.1:5550)."


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipelogic")
def main() -> None:
    """Run, test and inspect Pipelogic components and pipelines locally."""


@main.command()
@click.argument("pipeline_file", type=click.Path(exists=True))
@click.option("--listen", default=DEFAULT_BROKER, show_default=True, help="Broker endpoint to bind (port 0: any free port).")
@click.option("--state-dir", type=click.Path(), default=None, help="State snapshots (default: .pipelogic/state beside the pipeline).")
@click.option("--max-restarts", type=int, default=5, show_default=True, help="Restarts of a crashed worker before the run fails.")
@click.option("--backoff-max", type=float, default=10.0, show_default=True, help="Longest wait before restarting a crashed worker (the wait doubles from 0.25 s).")
@click.option("--progress/--no-progress", default=None, help="Live progress (default: on a terminal).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Fail if the pipeline is not done within this many seconds.")
@click.option("--fresh", is_flag=True, help="Discard an unfinished run of this pipeline and start anew.")
def up(pipeline_file: str, listen: str, state_dir: str | None, max_restarts: int, backoff_max: float,
       progress: bool | None, timeout_s: float | None, fresh: bool) -> None:
    """Run PIPELINE_FILE: the broker plus one process per component, until drained.

    An unfinished run of the same pipeline (interrupted, or killed) is continued from its
    state directory; a finished one starts anew."""
    from pipelogic.cli._up import Supervisor

    sup = Supervisor(Path(pipeline_file), listen, state_dir, max_restarts, progress, timeout_s, backoff_max, fresh)
    sys.exit(sup.run())


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("pipeline_file", type=click.Path(exists=True))
@click.option("--listen", default=DEFAULT_BROKER, show_default=True)
@click.pass_context
def broker(ctx: click.Context, pipeline_file: str, listen: str) -> None:
    """Run the broker stub alone (same as python -m backend_stub)."""
    args = [sys.executable, "-m", "backend_stub", pipeline_file, "--listen", listen, *ctx.args]
    os.execv(sys.executable, args)


@main.command()
@click.argument("component_dir", type=click.Path(exists=True, file_okay=False))
def worker(component_dir: str) -> None:
    """Run COMPONENT_DIR/src/main.py under the runtime (the container entry point).

    Exit codes: 0 done or stopped by SIGTERM (state snapshotted), 1 an error,
    3 every snapshot in the state directory is corrupt (it will not start from empty state),
    143 SIGTERM before the worker was serving."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cdir = Path(component_dir).resolve()
    main_py = cdir / "src" / "main.py"
    if not main_py.exists():
        raise click.ClickException(f"{main_py}: no such file (a component runs src/main.py)")
    os.environ["PIPELOGIC_COMPONENT_DIR"] = str(cdir)
    sys.path.insert(0, str(main_py.parent))
    sys.argv = [str(main_py)]
    from pipelogic.cli._signals import install_sigterm

    install_sigterm()
    try:
        runpy.run_path(str(main_py), run_name="__main__")
    except SnapshotCorrupt as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_SNAPSHOT_CORRUPT)
    except PipelogicError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("path", type=click.Path(exists=True))
def validate(path: str) -> None:
    """Check a component.yml or a pipeline.yml and report every problem."""
    from pipelogic.component import load_component
    from pipelogic.pipeline import load_pipeline

    p = Path(path)
    try:
        if p.is_dir():
            if (p / "component.yml").exists():
                spec = load_component(p)
                click.echo(f"ok: component {spec.name} ({p / 'component.yml'})")
                return
            p = p / "pipeline.yml"
        data = yaml.safe_load(p.read_text("utf-8")) if p.is_file() else None
        if isinstance(data, dict) and "components" in data:
            pl = load_pipeline(p)
            click.echo(f"ok: pipeline {pl.name}: {len(pl.vertices)} vertices ({p})")
            for name in pl.order:
                v = pl.vertices[name]
                for k, outs in enumerate(v.outputs):
                    if not outs and v.kind != "sink":
                        click.echo(f"warning: {p}: output {name}.{k} ({v.output_types[k]}) is not connected; its messages are dropped")
        else:
            spec = load_component(p)
            click.echo(f"ok: component {spec.name} ({p})")
    except DefinitionError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)


@main.command()
@click.option("--broker", "address", default=None, help=_BROKER_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
def status(address: str | None, as_json: bool) -> None:
    """Show the vertices of the running pipeline: state, ticks, queues, restarts, errors."""
    from pipelogic.cli._display import status_table
    from pipelogic.client import BrokerClient

    try:
        st = BrokerClient(address).status()
    except PipelogicError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"pipeline": st.pipeline, "state": st.state, "vertices": st.vertices, "streams": st.streams, "error": st.error}, indent=2))
        return
    click.echo(status_table(st))


@main.group()
def config() -> None:
    """Live configuration of running components."""


@config.command("set")
@click.argument("vertex")
@click.argument("assignments", nargs=-1, required=True)
@click.option("--broker", "address", default=None, help=_BROKER_HELP)
@click.option("--wait", "wait_s", type=float, default=5.0, show_default=True, help="Seconds to wait for the worker to apply it.")
def config_set(vertex: str, assignments: tuple[str, ...], address: str | None, wait_s: float) -> None:
    """Set config values: pipelogic config set VERTEX key=value ... (values are pipelang literals)."""
    from pipelogic.client import BrokerClient

    values = {}
    for a in assignments:
        if "=" not in a:
            raise click.BadParameter(f"expected key=value, got {a!r}", param_hint="ASSIGNMENTS")
        k, v = a.split("=", 1)
        values[k.strip()] = v
    try:
        reply = BrokerClient(address).config_set(vertex, values, wait_s)
    except PipelogicError as exc:
        raise click.ClickException(str(exc)) from None
    if not reply.ok:
        raise click.ClickException(reply.error or "refused")
    if reply.applied:
        click.echo(f"{vertex}: config version {reply.version} applied by the worker")
    else:
        click.echo(f"{vertex}: config version {reply.version} stored; {reply.error or 'no worker connected, applied when one connects'}")


@main.command()
@click.argument("name")
@click.option("--directory", "-d", type=click.Path(file_okay=False), default=".", show_default=True)
def init(name: str, directory: str) -> None:
    """Scaffold a component directory NAME with a test."""
    from pipelogic.cli._scaffold import scaffold

    try:
        path = scaffold(name, Path(directory))
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {path}: edit src/main.py, then run: python -m pytest {path / 'tests'}")


@main.command()
@click.argument("pipeline_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Where to write (default: compose.yaml beside the pipeline); - for stdout.")
@click.option("--image", "images", multiple=True, metavar="VERTEX=TAG",
              help="Run VERTEX from an image made by `pipelogic image build` (repeatable).")
@click.option("--build", is_flag=True, help="Build an image for each component that has src/requirements.txt.")
@click.option("--wheels", type=click.Path(exists=True, file_okay=False), default=None,
              help="With --build: install requirements from this folder of wheels.")
@click.option("--port", type=int, default=5550, show_default=True, help="The broker's port on the compose network.")
def compose(pipeline_file: str, output: str | None, images: tuple[str, ...], build: bool, wheels: str | None, port: int) -> None:
    """Write a compose file that runs PIPELINE_FILE in containers (docker-compose or Swarm)."""
    from pipelogic.containers import (
        RUNTIME_IMAGE,
        ComposeOptions,
        build_component_image,
        render_compose,
    )
    from pipelogic.errors import ContainerError
    from pipelogic.pipeline import load_pipeline

    try:
        pl = load_pipeline(pipeline_file)
    except DefinitionError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    chosen: dict[str, str] = {}
    for item in images:
        vertex, sep, tag = item.partition("=")
        if not sep or not vertex or not tag:
            raise click.BadParameter(f"expected VERTEX=TAG, got {item!r}", param_hint="--image")
        chosen[vertex] = tag
    out = Path(output) if output and output != "-" else pl.directory / "compose.yaml"
    try:
        if build:
            for name, v in pl.vertices.items():
                if v.component is not None and name not in chosen and (v.component.directory / "src" / "requirements.txt").is_file():
                    chosen[name] = build_component_image(v.component.directory, wheels=wheels,
                                                         log=lambda line: click.echo(line, err=True))
        text = render_compose(pl, out, ComposeOptions(RUNTIME_IMAGE, chosen, port, command=_command_line()))
    except ContainerError as exc:
        raise click.ClickException(str(exc)) from None
    if output == "-":
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}: run it with `docker-compose -f {out} up` "
               f"(images: scripts/build-images)")


def _command_line() -> str:
    return " ".join(["pipelogic", *sys.argv[1:]])


@main.group()
def image() -> None:
    """Container images of components."""


@image.command("build")
@click.argument("component_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-t", "--tag", default=None, help="Image tag (default: pipelogic/NAME:latest).")
@click.option("--wheels", type=click.Path(exists=True, file_okay=False), default=None,
              help="Install src/requirements.txt from this folder of wheels (no index needed).")
def image_build(component_dir: str, tag: str | None, wheels: str | None) -> None:
    """Build an image that runs COMPONENT_DIR on top of the runtime image, with no mount."""
    from pipelogic.containers import build_component_image
    from pipelogic.errors import ContainerError

    try:
        built = build_component_image(component_dir, tag, wheels, log=lambda line: click.echo(line, err=True))
    except DefinitionError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    except ContainerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(built)


@main.command()
def health() -> None:
    """Exit 0 if this container's broker or worker beat recently (the image's HEALTHCHECK)."""
    from pipelogic import _health

    ok, reason = _health.check()
    click.echo(("healthy: " if ok else "unhealthy: ") + reason)
    sys.exit(0 if ok else 1)
