"""Fixtures for tests on the real Docker engine (docker SDK; compose via the system program).

Without an engine these tests skip with the reason, except when PIPELOGIC_REQUIRE_DOCKER=1
(``.ci/run`` sets it): then a missing engine is a failure. PIPELOGIC_DOCKER_FROM_SCRATCH=1
(also set by ``.ci/run``) removes our images first, so the offline build path runs from
nothing. Every compose project, volume, network and swarm a test makes is removed at the
end of the test, and a final sweep removes anything left under the test prefix.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelogic.containers._images import LOCAL_BASE, RUNTIME_IMAGE, build_runtime_image
from pipelogic.errors import ContainerError
from tests.docker.dockerlib import COMPOSE, PREFIX, ROOT, Project


def _unavailable(reason: str) -> None:
    if os.environ.get("PIPELOGIC_REQUIRE_DOCKER") == "1":
        pytest.fail(f"PIPELOGIC_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    try:
        import docker

        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable engine
        _unavailable(f"no Docker engine: {exc}")
    if not Path(COMPOSE).exists():
        _unavailable(f"{COMPOSE} (docker-compose 1.x) is not installed")
    yield client
    _sweep(client)
    client.close()


def _sweep(client: Any) -> None:
    """Remove whatever a failed test left behind under the test prefix."""
    for c in client.containers.list(all=True, ignore_removed=True):  # one may go while we look
        if c.name.startswith(PREFIX) or c.labels.get("com.docker.compose.project", "").startswith(PREFIX):
            c.remove(force=True)
    for v in client.volumes.list():
        if v.name.startswith(PREFIX):
            v.remove(force=True)
    for n in client.networks.list():
        if n.name.startswith(PREFIX):
            n.remove()


@pytest.fixture(scope="session")
def runtime_image(engine: Any) -> str:
    """The runtime image, built by the same code as scripts/build-images (offline path)."""
    if os.environ.get("PIPELOGIC_DOCKER_FROM_SCRATCH") == "1":
        for ref in (RUNTIME_IMAGE, RUNTIME_IMAGE.rsplit(":", 1)[0] + ":latest", LOCAL_BASE):
            if engine.images.list(name=ref):
                engine.images.remove(ref, force=True)
        shutil.rmtree(ROOT / "build" / "docker", ignore_errors=True)
    try:
        return build_runtime_image(offline=True)
    except ContainerError as exc:  # e.g. no registry and no mmdebstrap here
        _unavailable(f"cannot build the runtime image: {exc}")
        raise


@pytest.fixture
def project(engine: Any, runtime_image: str) -> Iterator[Callable[[Path], Project]]:
    made: list[Project] = []

    def make(file: Path) -> Project:
        p = Project(engine, file)
        made.append(p)
        return p

    yield make
    for p in made:
        p.down()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)
