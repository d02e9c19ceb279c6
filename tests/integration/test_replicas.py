"""Replicated vertices end to end (real broker, real worker processes): a component that
sleeps a random 0-5 ms per message, run as several instances, must give exactly what one
instance gives (``x * 3 + 1`` for each input, in order, once), however its instances come
and go: SIGKILLed at random under `pipelogic up` (which restarts them), added to a running
vertex, stopped early (scaled down). The control run without redelivery must lose
messages, or the chaos test proves nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipelogic import protocol as P
from pipelogic.client import BrokerClient
from pipelogic.errors import PipelogicError
from tests.helpers import BrokerProc, free_port, reap, scrape, wait_until
from tests.integration.chaos_reference import COMPONENTS, up_process, verdict

SLEEPER = COMPONENTS / "sleeper"
N = 20_000


def reference(n: int) -> list[int]:
    return [3 * x + 1 for x in range(n)]


def sleeper_pipeline(n: int, replicas: int, settings: dict | None = None, max_ms: float = 5.0) -> str:
    return json.dumps(
        {
            "name": "replicated",
            "settings": settings or {},
            "components": {
                "numbers": {"source": "sequence", "count": n},
                "sleeper": {"path": str(SLEEPER), "replicas": replicas, "config": {"max_ms": max_ms}},
                "out": {"sink": "jsonl", "path": "out.jsonl"},
            },
            "connections": ["numbers -> sleeper", "sleeper -> out"],
        }
    )


def read_out(tmp_path: Path) -> list[int]:
    out = tmp_path / "out.jsonl"
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def sleeper_status(client: BrokerClient) -> P.VertexStatus | None:
    try:
        return next(v for v in client.status().vertices if v["name"] == "sleeper")
    except PipelogicError:
        return None


class Watcher(threading.Thread):
    """Polls the broker's status: the most ticks each instance (by id) was seen with, and,
    as a nemesis, SIGKILLs a random running instance every 0.2-0.6 s."""

    def __init__(self, endpoint: str, kills: int = 0, seed: int = 0) -> None:
        super().__init__(daemon=True)
        self.client = BrokerClient(endpoint, timeout_s=1.0)
        self.rng = random.Random(seed)
        self.kills_wanted = kills
        self.kills: list[tuple[str, int]] = []
        self.ticks: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(0.2, 0.6) if self.kills_wanted else 0.1):
            v = sleeper_status(self.client)
            if v is None:
                continue
            for i in v.get("instances", []):
                self.ticks[i["instance"]] = max(self.ticks.get(i["instance"], 0), i["ticks"])
            running = [i for i in v.get("instances", []) if i["state"] == "running" and i["pid"] is not None]
            if len(self.kills) < self.kills_wanted and running:
                victim = self.rng.choice(running)
                pid = victim["pid"]
                assert pid is not None
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.kills.append((victim["instance"], pid))


def test_three_instances_give_exactly_what_one_gives(tmp_path, cli_env):
    f = tmp_path / "pipeline.yml"
    f.write_text(sleeper_pipeline(N, 3))
    with up_process(f, cli_env, "--timeout", "150") as up:
        watcher = Watcher(up.endpoint)
        watcher.start()
        rc = up.proc.wait(180)
        watcher.stop.set()
        watcher.join(5)
    output = up.output
    assert rc == 0, output[-3000:]
    assert verdict(read_out(tmp_path), reference(N)) == "ALL-RECORDS-DELIVERED", output[-3000:]
    # Each of the three instances (numbered by `up`) did a share of the work.
    assert sorted(watcher.ticks) == ["sleeper#0", "sleeper#1", "sleeper#2"], watcher.ticks
    assert all(n > N // 10 for n in watcher.ticks.values()), watcher.ticks
    assert "3 worker(s)" in output


@pytest.mark.parametrize("redelivery", [1, 0], ids=["exactly-once", "control-without-redelivery"])
def test_sigkilled_instances_lose_nothing_and_duplicate_nothing(tmp_path, cli_env, redelivery):
    seed = int(os.environ.get("PIPELOGIC_CHAOS_SEED", random.randrange(1 << 30)))
    f = tmp_path / "pipeline.yml"
    f.write_text(sleeper_pipeline(N, 3, {"redelivery": redelivery, "heartbeat_ms": 500}))
    with up_process(f, cli_env, "--max-restarts", "1000", "--backoff-max", "0.25", "--timeout", "150") as up:
        nemesis = Watcher(up.endpoint, kills=12, seed=seed)
        nemesis.start()
        rc = up.proc.wait(180)
        nemesis.stop.set()
        nemesis.join(5)
    line = verdict(read_out(tmp_path), reference(N))
    report = f"seed={seed} kills={len(nemesis.kills)} verdict: {line}\n{up.output[-3000:]}"
    print(report)
    assert len(nemesis.kills) >= 8, f"the run ended before the nemesis could kill 8 instances: {report}"
    if redelivery:
        assert rc == 0, report
        assert line == "ALL-RECORDS-DELIVERED", report
        assert "restarting in" in up.output
    else:
        assert line != "ALL-RECORDS-DELIVERED", f"the control run without redelivery lost nothing: {report}"


def start_worker(endpoint: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelogic", "worker", str(SLEEPER)],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env, PIPELOGIC_BROKER=endpoint, PIPELOGIC_COMPONENT="sleeper"),
    )


def test_instances_join_and_leave_a_running_vertex(tmp_path, cli_env):
    """One instance starts; a second joins mid-run and takes ticks; the first is stopped
    early (SIGTERM: it says Goodbye, its unanswered ticks go to the others); a third joins.
    The output is exact and `status` showed each instance."""
    n = 4000
    f = tmp_path / "pipeline.yml"
    f.write_text(sleeper_pipeline(n, 2, {"credit": 32}, max_ms=2.0))
    port = free_port()
    broker = BrokerProc(f, cli_env, "--metrics", f"127.0.0.1:{port}")
    workers: list[subprocess.Popen] = []
    try:
        client = BrokerClient(broker.endpoint, timeout_s=1.0)
        first = start_worker(broker.endpoint, cli_env)
        workers.append(first)

        def instance(pid: int) -> P.InstanceStatus | None:
            v = sleeper_status(client)
            return next((i for i in (v.get("instances", []) if v else []) if i["pid"] == pid), None)

        def ticks_of(pid: int) -> int:
            i = instance(pid)
            return i["ticks"] if i else 0

        wait_until(lambda: ticks_of(first.pid) > 300)
        second = start_worker(broker.endpoint, cli_env)
        workers.append(second)
        joined = wait_until(lambda: (i := instance(second.pid)) is not None and i["ticks"] > 50 and i)
        assert joined["instance"].endswith(f":{second.pid}") and joined["state"] == "running"
        v = sleeper_status(client)
        assert v is not None and [i["pid"] for i in v["instances"]] == [first.pid, second.pid]
        assert v["state"] == "running" and v["replicas"] == 2
        key = ("pipelogic_vertex_instances", (("kind", "component"), ("pipeline", "replicated"), ("vertex", "sleeper")))
        wait_until(lambda: scrape(f"http://127.0.0.1:{port}/metrics").get(key) == 2.0)  # published every 0.5 s
        first.send_signal(signal.SIGTERM)  # scale down: it leaves before the end
        assert first.wait(30) == 0
        wait_until(lambda: instance(first.pid) is None)
        third = start_worker(broker.endpoint, cli_env)
        workers.append(third)
        wait_until(lambda: ticks_of(third.pid) > 20)
        assert broker.proc.wait(120) == 0, "".join(broker.lines)[-3000:]
        for w in workers[1:]:
            w.wait(15)  # closed by the broker at the end
    finally:
        reap(workers, broker)
    assert verdict(read_out(tmp_path), reference(n)) == "ALL-RECORDS-DELIVERED"
    assert second.returncode == 0 and third.returncode == 0


def test_a_stopped_instance_is_declared_dead_and_replaced_while_the_others_go_on(tmp_path, cli_env):
    """SIGSTOP one of two instances: the other keeps working (a credit ahead at most,
    then waits), the broker declares the stopped one dead after liveness x heartbeat and
    deals its ticks again, `up` kills the stopped process and starts the instance anew."""
    n = 6000
    f = tmp_path / "pipeline.yml"
    f.write_text(sleeper_pipeline(n, 2, {"heartbeat_ms": 200, "liveness": 5, "credit": 16}, max_ms=2.0))
    with up_process(f, cli_env, "--backoff-max", "0.25", "--timeout", "90") as up:
        client = BrokerClient(up.endpoint, timeout_s=1.0)

        def two_working():
            v = sleeper_status(client)
            running = [i for i in (v or {}).get("instances", []) if i["state"] == "running" and i["ticks"] > 100]
            return running if len(running) == 2 else None

        victim, other = wait_until(two_working)
        os.kill(victim["pid"], signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            v = wait_until(lambda: (s := sleeper_status(client)) is not None and victim["pid"] in s["lost_pids"] and s)
            declared = time.monotonic() - stopped_at
            # The other instance went on meanwhile.
            survivor = next(i for i in v["instances"] if i["pid"] == other["pid"])
            assert survivor["ticks"] > other["ticks"], (other, survivor)
            wait_until(lambda: f"the broker lost this worker (pid {victim['pid']})" in up.output)
        finally:
            try:
                os.kill(victim["pid"], signal.SIGCONT)  # `up` kills it; never leave it stopped
            except ProcessLookupError:
                pass
        rc = up.proc.wait(90)
    output = up.output
    assert rc == 0, output[-3000:]
    assert 0.9 <= declared <= 5.0, declared  # liveness 5 x 200 ms = 1 s: never earlier
    assert f"the broker lost this worker (pid {victim['pid']})" in output, output[-3000:]
    assert verdict(read_out(tmp_path), reference(n)) == "ALL-RECORDS-DELIVERED"


def test_an_instance_that_starts_after_the_end_is_told_so_and_exits_zero(tmp_path, cli_env):
    """A replica container may start after a short pipeline finished: the broker lingers
    (up to 10 s) while fewer instances than `replicas` said Hello, tells the late one
    that its vertex finished, and exits once it has gone."""
    f = tmp_path / "pipeline.yml"
    f.write_text(sleeper_pipeline(300, 2, max_ms=0.0))
    broker = BrokerProc(f, cli_env)
    workers: list[subprocess.Popen] = []
    try:
        client = BrokerClient(broker.endpoint, timeout_s=1.0)
        workers.append(start_worker(broker.endpoint, cli_env))
        wait_until(lambda: client.status().state == "done")
        assert broker.proc.poll() is None  # lingering: one of the two replicas never came
        late = start_worker(broker.endpoint, cli_env)
        workers.append(late)
        assert late.wait(30) == 0
        assert broker.proc.wait(30) == 0
        assert workers[0].wait(15) == 0
    finally:
        reap(workers, broker)
    assert verdict(read_out(tmp_path), reference(300)) == "ALL-RECORDS-DELIVERED"
