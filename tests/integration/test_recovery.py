"""Crash points, I/O errors, corrupt snapshots, the state lock and SIGTERM, each against a
real broker and real worker processes.

Every scenario runs source -> stateful counter -> sink over 2,000 values. The counter's
first incarnation gets a fault; a supervisor thread restarts it without one; then the
sink must hold exactly the reference outputs and the final snapshot the reference state.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelogic import _faults
from pipelogic.pipeline import parse_pipeline
from pipelogic.state import SnapshotStore, unpack_state
from pipelogic.testing import run_pipeline
from tests.helpers import wait_until
from tests.integration.chaos_reference import COMPONENTS, fold_counter

COUNTER = COMPONENTS / "counter"
N = 2000


WANT_OUT, WANT_STATE = fold_counter(N)


def check_snapshot(state_dir: Path) -> int:
    """The loader finds a committed snapshot (or none at all) and its state is the
    fold of exactly the ticks it claims. Returns its tick."""
    snap = SnapshotStore(state_dir / "counter", "counter").load()
    if snap is None:
        return 0
    assert unpack_state(snap.state) == fold_counter(snap.tick)[1], (
        f"snapshot at tick {snap.tick} is not fold_counter(inputs[:{snap.tick}])"
    )
    return snap.tick


class Supervisor:
    """Starts the counter with ``first_env``, and once it dies restarts it plainly."""

    def __init__(
        self,
        state_dir: Path,
        first_env: dict[str, str],
        between: Callable[[], None] | None = None,
        during: Callable[[subprocess.Popen[bytes], dict[str, str]], None] | None = None,
        restart_clean_exit: bool = False,
    ) -> None:
        self.restart_clean_exit = restart_clean_exit
        self.state_dir = state_dir
        self.first_env = first_env
        self.between = between
        self.during = during
        self.codes: list[int] = []

    def env(self, endpoint: str) -> dict[str, str]:
        return dict(
            os.environ,
            PIPELOGIC_BROKER=endpoint,
            PIPELOGIC_COMPONENT="counter",
            PIPELOGIC_STATE_DIR=str(self.state_dir),
            PIPELOGIC_CONNECT_TIMEOUT_S="10",
        )

    def spawn(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "pipelogic", "worker", str(COUNTER)], env=env, stderr=subprocess.PIPE
        )

    def __call__(self, endpoint: str) -> None:
        env = self.env(endpoint)
        p = self.spawn({**env, **self.first_env})
        if self.during is not None:
            self.during(p, env)
        self._wait(p)
        if self.restart_clean_exit and self.codes[-1] == 0:
            self._wait(self.spawn(env))
        while self.codes[-1] != 0 and len(self.codes) < 4:
            if self.between is not None:
                self.between()
            self._wait(self.spawn(env))

    def _wait(self, p: subprocess.Popen[bytes]) -> None:
        try:
            _, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.codes.append(p.returncode)
        self.stderr = err.decode(errors="replace")


def run(tmp_path: Path, sup: Supervisor, rate: int | None = None, snapshot: str = "50 ticks"):
    source = {"source": "sequence", "count": N, **({"rate": rate} if rate else {})}
    p = parse_pipeline(
        {
            "name": "recovery",
            "components": {
                "numbers": source,
                "counter": {"path": str(COUNTER), "snapshot": snapshot},
                "out": {"sink": "memory"},
            },
            "connections": ["numbers -> counter", "counter -> out"],
        },
        tmp_path / "pipeline.yml",
    )
    broker = run_pipeline(p, workers={"counter": sup}, state_dir=sup.state_dir, timeout_s=90, heartbeat_ms=200)
    assert broker.scheduler.vertices["out"].sink.values == WANT_OUT
    final = SnapshotStore(sup.state_dir / "counter", "counter").load()
    assert final is not None and final.tick == N and unpack_state(final.state) == WANT_STATE
    return broker


SWEEP = [label for label in _faults.LABELS if label != "during-config-apply"]  # no config here


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("label", SWEEP)
def test_crash_point_sweep(tmp_path, label, k):
    state = tmp_path / "state"
    seen: list[int] = []
    sup = Supervisor(state, {"PIPELOGIC_CRASH_AT": f"{label}:{k}"}, between=lambda: seen.append(check_snapshot(state)))
    run(tmp_path, sup)
    assert sup.codes[0] == -signal.SIGKILL, f"the crash point {label}:{k} was not reached"
    assert sup.codes[-1] == 0 and seen, sup.codes


@pytest.mark.parametrize("fault", ["fsync:2x3", "write:3x4", "fsync:4x2"])
def test_a_passing_io_error_holds_the_worker_then_it_goes_on(tmp_path, fault):
    """A disk that is full for a while: one line, no checkpoint for the failed writes, the
    worker holds and retries, and goes on when space returns; the result is exact."""
    state = tmp_path / "state"
    sup = Supervisor(state, {"PIPELOGIC_FAIL_AT": fault})
    run(tmp_path, sup)
    assert sup.codes == [0], sup.codes  # never restarted
    assert sup.stderr.count("cannot write a snapshot") == 1, sup.stderr
    assert "retries with backoff" in sup.stderr and "writable again" in sup.stderr
    assert "Traceback" not in sup.stderr


@pytest.mark.parametrize("fault", ["fsync:2x1000", "write:3x1000"])
def test_a_lasting_io_error_reports_no_checkpoint_and_keeps_the_old_snapshot(tmp_path, fault):
    state = tmp_path / "state"
    ticks: list[int] = []
    sup = Supervisor(
        state,
        {"PIPELOGIC_FAIL_AT": fault, "PIPELOGIC_STORAGE_RETRY_S": "1"},
        between=lambda: ticks.append(check_snapshot(state)),
    )
    run(tmp_path, sup)
    assert sup.codes[0] == 1, sup.codes  # after the retry limit, the worker stops
    assert len(ticks) == 1, ticks  # checked: whatever snapshot is on disk is intact and consistent


def _flip_newest(state: Path) -> None:
    files = sorted((state / "counter").glob("snapshot-*.plsnap"))
    data = bytearray(files[-1].read_bytes())
    data[-5] ^= 0xFF
    files[-1].write_bytes(bytes(data))


def test_corrupt_newest_snapshot_falls_back_to_the_previous(tmp_path):
    state = tmp_path / "state"
    sup = Supervisor(state, {"PIPELOGIC_CRASH_AT": "after-report:5"}, between=lambda: _flip_newest(state))
    broker = run(tmp_path, sup)
    assert sup.codes[0] == -signal.SIGKILL
    assert list((state / "counter").glob("*.corrupt")), "the bad generation was not set aside"
    assert broker.scheduler.vertices["counter"].duplicates > 0  # replayed from the older snapshot


def test_all_snapshots_corrupt_refuses_to_start(tmp_path):
    state = tmp_path / "state"
    backup = tmp_path / "backup"

    def corrupt_all() -> None:
        if not backup.exists():
            shutil.copytree(state / "counter", backup)
            for f in (state / "counter").glob("snapshot-*.plsnap"):
                f.write_bytes(f.read_bytes()[:-3])
        else:  # after the refusal, put the good files back
            for f in backup.glob("snapshot-*.plsnap"):
                shutil.copy(f, state / "counter" / f.name)

    sup = Supervisor(state, {"PIPELOGIC_CRASH_AT": "after-report:4"}, between=corrupt_all)
    run(tmp_path, sup)
    assert sup.codes[:3] == [-signal.SIGKILL, 3, 0], sup.codes  # 3: no valid snapshot


def test_second_instance_on_the_same_state_dir_refuses(tmp_path):
    state = tmp_path / "state"
    second: list[tuple[int, str]] = []

    def during(p: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        wait_until(lambda: (state / "counter" / "LOCK").exists(), 20, "the first worker's lock")
        other = subprocess.run(
            [sys.executable, "-m", "pipelogic", "worker", str(COUNTER)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        second.append((other.returncode, other.stderr))

    run(tmp_path, Supervisor(state, {}, during=during), rate=1000)
    code, err = second[0]
    assert code == 1 and "is in use by another worker" in err, (code, err)


def test_sigterm_snapshots_and_exits_zero(tmp_path):
    state = tmp_path / "state"
    timing: list[float] = []

    def during(p: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        time.sleep(0.8)  # mid-stream: the source takes 2 s
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        timing.append(time.monotonic() - t0)

    sup = Supervisor(state, {}, during=during, restart_clean_exit=True)
    broker = run(tmp_path, sup, rate=1000, snapshot="off")
    assert sup.codes == [0, 0] and timing and timing[0] < 5, (sup.codes, timing)
    vs = broker.scheduler.vertices["counter"]
    assert vs.duplicates == 0  # the final snapshot covered every applied tick: nothing recomputed
    assert vs.restarts == 1
