"""``python -m pipelogic.containers`` (``scripts/build-images``): build the runtime image."""

from __future__ import annotations

import sys

import click

from pipelogic.containers._images import (
    DEFAULT_BASE,
    LOCAL_BASE,
    RUNTIME_IMAGE,
    build_runtime_image,
)
from pipelogic.errors import ContainerError


@click.command()
@click.option("--base", default=None, help=f"Base image (default: {DEFAULT_BASE} if present or pullable, else {LOCAL_BASE} built with mmdebstrap).")
@click.option("--offline", is_flag=True, help=f"Do not try to pull {DEFAULT_BASE}; use or build the local base.")
@click.option("--rebuild", is_flag=True, help="Build even when the image is up to date.")
@click.option("-t", "--tag", default=RUNTIME_IMAGE, show_default=True)
def main(base: str | None, offline: bool, rebuild: bool, tag: str) -> None:
    """Build the pipelogic runtime image (broker and workers) from this source tree."""
    try:
        built = build_runtime_image(base, offline, rebuild, tag)
    except ContainerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(built)


if __name__ == "__main__":
    main()
