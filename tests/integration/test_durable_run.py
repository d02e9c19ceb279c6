"""The broker's durable run: crash points on its commit path, `pipelogic up`
killed, interrupted and run again, a changed pipeline, a second `up`, a store that cannot
commit for a while, and a worker told to stop while its broker is gone. Real processes,
real sockets; every result is checked against the crash-free reference."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelogic import _faults
from pipelogic.client import BrokerClient
from pipelogic.errors import PipelogicError
from pipelogic.state import SnapshotStore, unpack_state
from tests.helpers import up_file as up
from tests.helpers import wait_until
from tests.integration.chaos_reference import COMPONENTS, fold_counter, up_process


def write_pipeline(
    tmp_path: Path, n: int, rate: int | None = None, snapshot: str = "200 ticks or 0.2 s", credit: int | None = None
) -> Path:
    source = {"source": "sequence", "count": n, **({"rate": rate} if rate else {})}
    counter = {"path": str(COMPONENTS / "counter"), "snapshot": snapshot, **({"credit": credit} if credit else {})}
    f = tmp_path / "pipeline.yml"
    f.write_text(
        json.dumps(
            {
                "name": "durable",
                "settings": {"heartbeat_ms": 200},
                "components": {
                    "numbers": source,
                    "counter": counter,
                    "out": {"sink": "jsonl", "path": "out.jsonl"},
                },
                "connections": ["numbers -> counter", "counter -> out"],
            }
        )
    )
    return f


def sink(tmp_path: Path) -> list[int]:
    out = tmp_path / "out.jsonl"
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def final_state(state: Path) -> dict | None:
    snap = SnapshotStore(state / "counter", "counter").load()
    return unpack_state(snap.state) if snap is not None else None


def status_or_none(client: BrokerClient):
    try:
        return client.status()
    except PipelogicError:
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead; it only waits to be reaped
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def reap(*procs: subprocess.Popen[str]) -> None:
    """Kill what still runs, wait for every process and close its pipes."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()


def describe_process(pid: int) -> str:
    """State, kernel wait channel and command line of a process (for a failure message)."""
    proc = Path(f"/proc/{pid}")
    try:
        state = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("State:"))
        wchan = (proc / "wchan").read_text()
        cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, StopIteration) as exc:
        return f"{pid}: {exc}"
    return f"{pid}: {state} wchan={wchan} cmd={cmd}"


# -- crash points on the broker's commit path ----------------------------------------------------


class BrokerSupervisor:
    """The broker as a process of this test: started with a crash point, restarted plainly
    on the same store and address until it exits; one worker process throughout."""

    def __init__(self, tmp_path: Path, pipeline: Path, crash: str) -> None:
        self.tmp = tmp_path
        self.pipeline = pipeline
        self.state = tmp_path / "state"
        self.crash = crash
        self.codes: list[int] = []

    def broker(self, listen: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backend_stub",
                str(self.pipeline),
                "--listen",
                listen,
                "--state-dir",
                str(self.state),
            ],
            env={**env, "PIPELOGIC_SUPERVISED": "1"},  # as under up
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert p.stdout is not None
        first = p.stdout.readline().strip()
        return p, first.split("=", 1)[1] if first.startswith("PIPELOGIC_BROKER=") else ""

    def run(self) -> None:
        env = dict(os.environ)
        broker, endpoint = self.broker("tcp://127.0.0.1:0", {**env, "PIPELOGIC_CRASH_AT": self.crash})
        assert endpoint, "the broker did not start"
        wenv = dict(
            env,
            PIPELOGIC_BROKER=endpoint,
            PIPELOGIC_COMPONENT="counter",
            PIPELOGIC_STATE_DIR=str(self.state),
            PIPELOGIC_REJOIN_TIMEOUT_S="30",
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "pipelogic", "worker", str(COMPONENTS / "counter")],
            env=wenv,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for _ in range(4):
                assert broker.stdout is not None
                broker.stdout.read()
                broker.stdout.close()
                self.codes.append(broker.wait(60))
                if self.codes[-1] == 0:
                    break
                broker, _ = self.broker(endpoint, env)
            _, self.worker_err = worker.communicate(timeout=60)
        finally:
            reap(broker, worker)


@pytest.mark.parametrize("k", [3, 40])
@pytest.mark.parametrize("label", _faults.BROKER_LABELS)
def test_broker_crash_point_sweep(tmp_path, label, k):
    # About two seconds: up to 80 group commits (one per 25 ms at most, fewer on a loaded
    # machine), so the 40th is reached mid-run (at one second it was the run's last or none).
    n = 6000
    sup = BrokerSupervisor(tmp_path, write_pipeline(tmp_path, n, rate=3000), f"{label}:{k}")
    sup.run()
    assert sup.codes[0] == -signal.SIGKILL, f"the crash point {label}:{k} was not reached: {sup.codes}"
    assert sup.codes[-1] == 0, sup.codes
    want, want_state = fold_counter(n)
    assert sink(tmp_path) == want
    assert final_state(sup.state) == want_state


# -- pipelogic up: killed, interrupted, run again ----------------------------------------------


def test_kill9_of_up_takes_its_children_along_and_up_again_finishes_exactly(tmp_path, cli_env):
    n = 30_000
    pipeline = write_pipeline(tmp_path, n, rate=6000)
    state = tmp_path / "state"
    with up_process(pipeline, cli_env, "--state-dir", str(state)) as first:
        client = BrokerClient(first.endpoint, timeout_s=1.0)
        st = wait_until(lambda: (s := status_or_none(client)) and s.vertices[1]["ticks"] > 5000 and s, 30, "progress")
        pids = [st.broker["pid"]] + [v["pid"] for v in st.vertices if v["pid"]]
        first.proc.kill()
        first.proc.wait()
        # No broker or worker of that run keeps writing (parent-death signal).
        try:
            # Without the parent-death signal they would live on forever. Each normally stops in
            # about a second (graceful SIGTERM); the bound allows a loaded machine, and a hang
            # still fails, with the state of what is left.
            wait_until(lambda: not any(alive(p) for p in pids), 30, f"the children {pids} to die with up")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; still there: {[describe_process(p) for p in pids if alive(p)]}\n{first.output[-3000:]}"
            ) from None
    before = len(sink(tmp_path))
    again = up(pipeline, cli_env, "--state-dir", str(state))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming run" in again.stdout + again.stderr
    want, want_state = fold_counter(n)
    assert sink(tmp_path) == want and before > 0
    assert final_state(state) == want_state


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_up_snapshots_stops_everything_and_continues(tmp_path, cli_env, sig):
    n = 30_000
    pipeline = write_pipeline(tmp_path, n, rate=6000, snapshot="off")  # only the stop snapshots
    state = tmp_path / "state"
    with up_process(pipeline, cli_env, "--state-dir", str(state)) as first:
        client = BrokerClient(first.endpoint, timeout_s=1.0)
        st = wait_until(lambda: (s := status_or_none(client)) and s.vertices[1]["ticks"] > 5000 and s, 30, "progress")
        pids = [st.broker["pid"]] + [v["pid"] for v in st.vertices if v["pid"]]
        first.proc.send_signal(sig)
        rc = first.proc.wait(20)
    assert rc == 130, first.output
    assert "stopped; the run is kept in" in first.output
    assert not any(alive(p) for p in pids), "up left a child running"
    snap = SnapshotStore(state / "counter", "counter").load()
    assert snap is not None and snap.tick > 5000, "the worker did not snapshot on the way out"
    assert unpack_state(snap.state) == fold_counter(snap.tick)[1]
    again = up(pipeline, cli_env, "--state-dir", str(state))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"restored state at tick {snap.tick}" in again.stdout + again.stderr
    want, want_state = fold_counter(n)
    assert sink(tmp_path) == want
    assert final_state(state) == want_state
    # A resume the user asked for is not a restart; broker starts count within this run
    # (issue 25, item 4).
    assert "(broker start 2 of this run)" in again.stdout + again.stderr
    row = next(line.split() for line in again.stdout.splitlines() if line.startswith("counter "))
    assert row[7] == "0", again.stdout  # the restarts column


def test_a_changed_pipeline_is_refused_unless_fresh_and_a_finished_run_starts_anew(tmp_path, cli_env):
    pipeline = write_pipeline(tmp_path, 20_000, rate=5000)
    state = tmp_path / "state"
    with up_process(pipeline, cli_env, "--state-dir", str(state)) as first:
        client = BrokerClient(first.endpoint, timeout_s=1.0)
        wait_until(lambda: (s := status_or_none(client)) and s.vertices[1]["ticks"] > 1000, 30, "progress")
        first.proc.send_signal(signal.SIGINT)
        assert first.proc.wait(20) == 130
    write_pipeline(tmp_path, 3000)
    refused = up(pipeline, cli_env, "--state-dir", str(state))
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0, said
    assert "changed: vertex numbers: params.count: 20000 -> 3000" in said, said
    assert "--fresh" in said and "Traceback" not in said
    assert sink(tmp_path) and len(sink(tmp_path)) < 20_000  # the refused start touched nothing
    fresh = up(pipeline, cli_env, "--state-dir", str(state), "--fresh")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "starting a fresh run" in fresh.stdout + fresh.stderr
    assert sink(tmp_path) == fold_counter(3000)[0]
    anew = up(pipeline, cli_env, "--state-dir", str(state))
    assert anew.returncode == 0, anew.stdout + anew.stderr
    assert "finished; starting a new run" in anew.stdout + anew.stderr
    assert sink(tmp_path) == fold_counter(3000)[0]  # written anew, not appended


def test_a_second_up_on_the_same_pipeline_is_refused_and_touches_nothing(tmp_path, cli_env):
    n = 20_000
    pipeline = write_pipeline(tmp_path, n, rate=5000)
    state = tmp_path / "state"
    with up_process(pipeline, cli_env, "--state-dir", str(state)) as first:
        client = BrokerClient(first.endpoint, timeout_s=1.0)
        wait_until(lambda: (s := status_or_none(client)) and s.vertices[1]["ticks"] > 1000, 30, "progress")
        second = up(pipeline, cli_env, "--state-dir", str(state))
        assert first.proc.wait(60) == 0, first.output
    said = second.stdout + second.stderr
    assert second.returncode != 0 and "is in use by another broker" in said, said
    assert "Traceback" not in said
    assert sink(tmp_path) == fold_counter(n)[0]  # the first run's sink was never truncated


@pytest.mark.parametrize("credit", [None, 1], ids=["default-credit", "credit-1"])
def test_a_store_that_cannot_commit_waits_with_backoff_and_goes_on(tmp_path, cli_env, credit):
    """A full disk under the broker's store: one line, the pipeline waits, nothing is lost.
    At credit 1 the fast counter gets ticks formed ahead (unpaced, so that a value is always
    queued for the next tick): a tick held while the store cannot commit waits with the
    rest, and the run still ends exact."""
    n = 5000
    pipeline = write_pipeline(tmp_path, n, rate=None if credit else 5000, credit=credit)
    env = dict(cli_env, PIPELOGIC_FAIL_AT="commit:5x12")
    done = up(pipeline, env, "--state-dir", str(tmp_path / "state"))
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert said.count("cannot write its recovery store") == 1, said
    assert "No space left on device" in said and "writable again after 12 failed commit(s)" in said
    assert "Traceback" not in said
    assert sink(tmp_path) == fold_counter(n)[0]


def test_a_worker_told_to_stop_while_its_broker_is_gone_exits_at_once(tmp_path):
    pipeline = write_pipeline(tmp_path, 1_000_000, rate=2000)
    sup = BrokerSupervisor(tmp_path, pipeline, "")
    env = dict(os.environ)
    broker, endpoint = sup.broker("tcp://127.0.0.1:0", env)
    wenv = dict(env, PIPELOGIC_BROKER=endpoint, PIPELOGIC_COMPONENT="counter", PIPELOGIC_STATE_DIR=str(sup.state))
    worker = subprocess.Popen(
        [sys.executable, "-m", "pipelogic", "worker", str(COMPONENTS / "counter")],
        env=wenv,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = BrokerClient(endpoint, timeout_s=1.0)
        wait_until(lambda: (s := status_or_none(client)) and s.vertices[1]["ticks"] > 500, 30, "progress")
        broker.kill()
        broker.wait()
        assert worker.stderr is not None
        lines: list[str] = []
        wait_until(
            lambda: lines.append(worker.stderr.readline()) or "rejoining" in lines[-1],
            15,
            "the worker to notice its broker is gone",
        )
        t0 = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        rc = worker.wait(10)
        took = time.monotonic() - t0
        rest = worker.stderr.read()
    finally:
        reap(broker, worker)
    assert rc == 0, rest
    assert took < 3.0, took  # about a tenth of a second here; Docker's grace period is 10 s
    assert "stopped while the broker was gone" in rest
    snap = SnapshotStore(sup.state / "counter", "counter").load()
    assert snap is not None and unpack_state(snap.state) == fold_counter(snap.tick)[1]
