"""`scripts/bench --cases compose` on the real engine: 1080p frames from a camera container
through a worker container to the broker's sink, keys on (the generated file's default) and
a shared-memory volume; the rate is the broker's own, from its final status."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.docker.dockerlib import ROOT


@pytest.mark.parametrize("loan", [False, True], ids=["copied", "loaned"])
def test_the_bench_runs_frames_through_compose_with_keys_in_shared_memory(
    tmp_path: Path, runtime_image: str, loan: bool
) -> None:
    """``loaned``: the components build their outputs in ``loan()`` buffers, which are
    slots of the producer's own pool from the start."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from pipebench.components import make_components
        from pipebench.containers import compose_frames
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    frames = 400  # about two seconds: the broker's rate needs one or more of movement
    rate, final = compose_frames(tmp_path, make_components(tmp_path / "components"), frames, shm=True, loan=loan)
    assert rate > 0
    shm = final["broker"]["shm"]
    assert shm["adopted"] == 2 * frames and shm["held"] == 0, shm  # the camera's and the worker's frames
