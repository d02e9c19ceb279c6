"""File sinks that cannot write: a full disk (a real, small tmpfs filled mid-run), injected
ENOSPC. The sink holds, the pipeline waits, nothing is counted that was not written, and the output and final state are exact, also after the user gave up
on a blocked run and ran `up` again. Real processes, real sockets, real file systems."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelogic.client import BrokerClient
from pipelogic.errors import PipelogicError
from pipelogic.state import SnapshotStore, unpack_state
from tests.helpers import up_file, wait_until
from tests.integration.chaos_reference import COMPONENTS, fold_counter, up_process


def write_pipeline(folder: Path, n: int, sink_path: Path, rate: int | None = None) -> Path:
    source = {"source": "sequence", "count": n, **({"rate": rate} if rate else {})}
    f = folder / "pipeline.yml"
    f.write_text(
        json.dumps(
            {
                "name": "sinkfull",
                "settings": {"heartbeat_ms": 200},
                "components": {
                    "numbers": source,
                    "counter": {"path": str(COMPONENTS / "counter"), "snapshot": "200 ticks or 0.2 s"},
                    "out": {"sink": "jsonl", "path": str(sink_path)},
                },
                "connections": ["numbers -> counter", "counter -> out"],
            }
        )
    )
    return f


def lines(path: Path) -> list[int]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def final_state(state: Path) -> dict | None:
    snap = SnapshotStore(state / "counter", "counter").load()
    return unpack_state(snap.state) if snap is not None else None


def blocked(endpoint: str) -> str | None:
    try:
        st = BrokerClient(endpoint, timeout_s=1.0).status()
    except PipelogicError:
        return None
    return next((v["blocked"] for v in st.vertices if v.get("blocked")), None)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 256 KiB tmpfs, mounted for this test (root only: a real full disk, not an injected error)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        if os.environ.get("PIPELOGIC_REQUIRE_DOCKER") and os.geteuid() == 0:
            raise  # CI runs as root: this test must run there
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until only about ``leave`` bytes are free; returns the filler file."""
    filler = disk / "filler"
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_a_full_sink_disk_holds_the_run_and_loses_nothing_when_freed(tmp_path, small_disk, cli_env):
    """Out of space mid-run: one log line, status says BLOCKED, the run waits; space freed,
    it goes on and ends with every value exactly once."""
    n = 12000  # about 100 KB of lines: more than the 40 KB left free
    out = small_disk / "out.jsonl"
    filler = fill(small_disk, 40_000)
    pipeline = write_pipeline(tmp_path, n, out)
    state = tmp_path / "state"
    with up_process(pipeline, cli_env, "--state-dir", str(state)) as run:
        why = wait_until(lambda: blocked(run.endpoint), 60, "the sink to report that it cannot write")
        assert "No space left on device" in why and str(out) in why
        held = len(lines(out))
        assert 0 < held < n
        filler.unlink()
        assert run.proc.wait(90) == 0, run.output
    said = run.output
    assert said.count("cannot write") == 1, said
    assert "writable again" in said and "Traceback" not in said, said
    assert lines(out) == fold_counter(n)[0]
    assert final_state(state) == fold_counter(n)[1]


def test_giving_up_on_a_full_sink_and_running_again_finishes_exactly(tmp_path, small_disk, cli_env):
    """The run seen in the field: the disk fills, the user stops `up`, frees space and runs it
    again. The values the sink could not write were never counted: the second run writes
    them, says "lost 0" truthfully, and the output has no gap."""
    n = 12000
    out = small_disk / "out.jsonl"
    filler = fill(small_disk, 40_000)
    pipeline = write_pipeline(tmp_path, n, out)
    state = tmp_path / "state"
    with up_process(pipeline, cli_env, "--state-dir", str(state)) as run:
        wait_until(lambda: blocked(run.endpoint), 60, "the sink to report that it cannot write")
        run.proc.send_signal(signal.SIGINT)
        code = run.proc.wait(60)
    assert code != 0 and "the run is kept" in run.output, run.output
    assert "Traceback" not in run.output and "BLOCKED" in run.output, run.output
    filler.unlink()
    again = up_file(pipeline, cli_env, "--state-dir", str(state))
    said = again.stdout + again.stderr
    assert again.returncode == 0, said
    assert "resuming run" in said
    assert lines(out) == fold_counter(n)[0]
    assert final_state(state) == fold_counter(n)[1]


def test_injected_sink_write_failures_are_held_and_retried(tmp_path, cli_env):
    """The same discipline where no tmpfs can be mounted: PIPELOGIC_FAIL_AT=sink:k x n."""
    n = 4000
    out = tmp_path / "out.jsonl"
    pipeline = write_pipeline(tmp_path, n, out, rate=4000)
    done = up_file(pipeline, dict(cli_env, PIPELOGIC_FAIL_AT="sink:5x10"), "--state-dir", str(tmp_path / "state"))
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert said.count("cannot write") == 1 and "writable again after 10 failed write(s)" in said, said
    assert lines(out) == fold_counter(n)[0]
