"""``python -m pipelogic.containers`` (``scripts/build-images``): build the runtime image."""

from __future__ import annotations

import sys

import click

from pipelogic.containers._images import (
    DEFAULT_BASE,
    LOCAL_BASE,
    RUNTIME_IMAGE,
    SLIM_IMAGE,
    build_runtime_image,
)
from pipelogic.errors import ContainerError


@click.command()
@click.option(
    "--base",
    default=None,
    help=f"Base image (default: {DEFAULT_BASE} if present or pullable, else {LOCAL_BASE} built with mmdebstrap).",
)
@click.option("--offline", is_flag=True, help=f"Do not try to pull {DEFAULT_BASE}; use or build the local base.")
@click.option("--rebuild", is_flag=True, help="Build even when the image is up to date.")
@click.option("--slim", is_flag=True, help=f"Build the slim variant ({SLIM_IMAGE}): pipelogic's own dependencies only.")
@click.option("-t", "--tag", default=None, help=f"Image tag (default: {RUNTIME_IMAGE}, or {SLIM_IMAGE} with --slim).")
def main(base: str | None, offline: bool, rebuild: bool, slim: bool, tag: str | None) -> None:
    """Build the pipelogic runtime image (broker and workers) from this source tree: by
    default with what the platform's runtime image carries (numpy, opencv, pyyaml,
    protobuf, pika); --slim without them."""
    try:
        built = build_runtime_image(base, offline, rebuild, tag, variant="slim" if slim else "full")
    except ContainerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(built)


if __name__ == "__main__":
    main()
