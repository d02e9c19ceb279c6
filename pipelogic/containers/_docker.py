"""The docker SDK, reached lazily (it is the extra ``pipelogic[containers]``): a client for
the engine, an image by reference, and where build progress is said."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from pipelogic.errors import ContainerError

__all__ = ["Log", "docker_client", "say"]

Log = Callable[[str], None]


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def docker_client() -> Any:
    """A docker SDK client for the engine in the environment (DOCKER_HOST or the socket)."""
    try:
        from docker.errors import DockerException

        import docker
    except ImportError:
        raise ContainerError(
            "building images needs the docker SDK, which is not installed here: pip install 'pipelogic[containers]'"
        ) from None
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except DockerException as exc:
        raise ContainerError(f"no Docker engine answers ({exc}); is it running, and may this user use it?") from None
    return client


def _image(client: Any, ref: str) -> Any | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None
