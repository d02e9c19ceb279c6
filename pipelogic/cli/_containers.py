"""``pipelogic compose`` and ``pipelogic image build``: a pipeline in containers."""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["compose", "image"]


@click.command()
@click.argument("pipeline_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write (default: compose.yaml beside the pipeline); - for stdout.",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="VERTEX=TAG",
    help="Run VERTEX from an image made by pipelogic image build (repeatable).",
)
@click.option("--build", is_flag=True, help="Build an image for each component that has src/requirements.txt.")
@click.option(
    "--wheels",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="With --build: install requirements from this folder of wheels.",
)
@click.option(
    "--tag-prefix",
    default="pipelogic/",
    show_default=True,
    help="With --build: the images are PREFIX<component name>:latest.",
)
@click.option(
    "--runtime",
    default=None,
    metavar="IMAGE",
    help="The runtime image the services run (and --build builds on); default: ours, as built.",
)
@click.option("--port", type=int, default=5550, show_default=True, help="The broker's port on the compose network.")
@click.option(
    "--keys/--no-keys",
    default=True,
    show_default=True,
    help="CurveZMQ between the containers, with keys the broker makes on a volume.",
)
@click.option(
    "--shared-memory",
    "shared_memory",
    default="",
    metavar="SIZE",
    help="Large values between the containers through shared memory: a tmpfs volume of SIZE "
    "(e.g. 1g) mounted into each; with keys, a producer's slots only for the containers that "
    "consume it (docs/containers.md).",
)
@click.option(
    "--ui",
    "ui_port",
    type=click.IntRange(1, 65535),
    default=None,
    metavar="PORT",
    help="The broker serves the live web view, published on the host at http://127.0.0.1:PORT/ only.",
)
def compose(
    pipeline_file: str,
    output: str | None,
    images: tuple[str, ...],
    build: bool,
    wheels: str | None,
    tag_prefix: str,
    runtime: str | None,
    port: int,
    keys: bool,
    shared_memory: str,
    ui_port: int | None,
) -> None:
    """Write a compose file that runs PIPELINE_FILE in containers (docker-compose or Swarm)."""
    from pipelogic.containers import (
        RUNTIME_IMAGE,
        ComposeOptions,
        build_component_image,
        render_compose,
    )
    from pipelogic.pipeline import load_pipeline
    from pipelogic.porting import has_requirements

    pl = load_pipeline(pipeline_file)
    runtime_image = runtime or RUNTIME_IMAGE
    chosen: dict[str, str] = {}
    for item in images:
        vertex, sep, tag = item.partition("=")
        if not sep or not vertex or not tag:
            raise click.BadParameter(f"expected VERTEX=TAG, got {item!r}", param_hint="--image")
        chosen[vertex] = tag
    out = Path(output) if output and output != "-" else pl.directory / "compose.yaml"
    if build:
        for name, v in pl.vertices.items():
            if v.component is not None and name not in chosen and has_requirements(v.component.directory):
                chosen[name] = build_component_image(
                    v.component.directory,
                    wheels=wheels,
                    runtime=runtime_image,
                    log=lambda line: click.echo(line, err=True),
                    tag_prefix=tag_prefix,
                )
    text = render_compose(
        pl,
        out,
        ComposeOptions(
            runtime_image,
            chosen,
            port,
            command=_command_line(),
            keys=keys,
            shared_memory=shared_memory,
            ui_port=ui_port or 0,
        ),
    )
    if output == "-":
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    for folder in pl.outside:
        click.echo(
            f"note: allow_paths_outside: the broker container mounts {folder}, outside the pipeline's folder", err=True
        )
    click.echo(f"wrote {out}: run it with `docker-compose -f {out} up` (images: scripts/build-images)")


def _command_line() -> str:
    return " ".join(["pipelogic", *sys.argv[1:]])


@click.group()
def image() -> None:
    """Container images of components."""


@image.command("build")
@click.argument("component_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-t", "--tag", default=None, help="Image tag (default: pipelogic/NAME:latest).")
@click.option(
    "--wheels",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Install src/requirements.txt from this folder of wheels (no index needed).",
)
@click.option(
    "--tag-prefix",
    default="pipelogic/",
    show_default=True,
    help="Without -t, the image is PREFIX<component name>:latest.",
)
@click.option("--runtime", default=None, metavar="IMAGE", help="Build on this runtime image (default: ours, as built).")
def image_build(component_dir: str, tag: str | None, wheels: str | None, tag_prefix: str, runtime: str | None) -> None:
    """Build an image that runs COMPONENT_DIR on top of the runtime image, with no mount."""
    from pipelogic.containers import RUNTIME_IMAGE, build_component_image

    built = build_component_image(
        component_dir,
        tag,
        wheels,
        runtime or RUNTIME_IMAGE,
        log=lambda line: click.echo(line, err=True),
        tag_prefix=tag_prefix,
    )
    click.echo(built)
