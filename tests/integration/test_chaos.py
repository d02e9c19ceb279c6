"""Kill -9 chaos under `pipelogic up` with an exactly-once verifier.

source (100,000 values) -> a stateless vertex run as 3 replicas -> stateful counter ->
stateful streaming accumulator -> jsonl sink, while a seeded nemesis SIGKILLs a random
worker (any instance of the replicated vertex too) at random moments (at least 20 times).
The verifier recomputes everything by folding the components' own pure logic over the
input: the sink must hold exactly the reference outputs, once each and in order, and each
worker's final snapshot must equal the reference final state. The control run switches
redelivery off and must report loss, or the test proves nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import pytest

from pipelogic.client import BrokerClient
from pipelogic.errors import PipelogicError
from pipelogic.protocol import StatusReply
from tests.integration.chaos_reference import (
    COMPONENTS,
    chaos_pipeline,
    final_states,
    fold_counter,
    fold_pipeline,
    up_process,
    verdict,
)

N = 100_000
MIN_KILLS = 20


class Nemesis(threading.Thread):
    """SIGKILLs a random live worker at random moments, logging each action."""

    def __init__(self, endpoint: str, seed: int, kills: int) -> None:
        super().__init__(daemon=True)
        self.client = BrokerClient(endpoint, timeout_s=1.0)
        self.rng = random.Random(seed)
        self.target = kills
        self.log: list[tuple[float, str, int]] = []
        self.stop = threading.Event()
        self.last_status: StatusReply | None = None

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.is_set() and len(self.log) < self.target:
            if self.stop.wait(self.rng.uniform(0.1, 0.5)):
                return
            try:
                st = self.client.status()
            except PipelogicError:
                continue
            self.last_status = st
            live = [
                (v["name"], pid)
                for v in st.vertices
                if v["name"] in ("counter", "acc") and v["state"] == "running" and (pid := v["pid"]) is not None
            ]
            live += [
                (f"spread {i['instance']}", pid)
                for v in st.vertices
                if v["name"] == "spread"
                for i in v.get("instances", [])
                if i["state"] == "running" and (pid := i["pid"]) is not None
            ]
            if not live:
                continue
            name, pid = self.rng.choice(live)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.log.append((time.monotonic() - t0, name, pid))


@pytest.mark.parametrize("redelivery", [1, 0], ids=["exactly-once", "control-without-redelivery"])
def test_kill9_chaos_exactly_once(tmp_path, cli_env, redelivery):
    seed = int(os.environ.get("PIPELOGIC_CHAOS_SEED", random.randrange(1 << 30)))
    pipeline = tmp_path / "pipeline.yml"
    pipeline.write_text(json.dumps(chaos_pipeline("chaos", N, {"redelivery": redelivery, "heartbeat_ms": 500}, 7000)))
    state = tmp_path / "state"
    with up_process(
        pipeline,
        cli_env,
        "--state-dir",
        str(state),
        "--max-restarts",
        "1000",
        "--backoff-max",
        "0.25",
        "--timeout",
        "150",
    ) as up:
        nemesis = Nemesis(up.endpoint, seed, MIN_KILLS + 5)
        nemesis.start()
        rc = up.proc.wait(180)
        nemesis.stop.set()
        nemesis.join(5)
    output = up.output
    kills = nemesis.log
    want, want_counter, want_acc = fold_pipeline(N)
    out = tmp_path / "out.jsonl"
    got = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    line = verdict(got, want)
    states = final_states(state)
    exact = line == "ALL-RECORDS-DELIVERED" and states["counter"] == want_counter and states["acc"] == want_acc
    report = f"seed={seed} kills={len(kills)} verdict: {line}; states exact: {exact}\n{output[-3000:]}"
    print(report)
    assert len(kills) >= MIN_KILLS, f"the pipeline ended before the nemesis could kill {MIN_KILLS} times: {report}"
    assert any(name.startswith("spread") for _, name, _ in kills), f"no replica was killed: {report}"
    if redelivery:
        assert rc == 0, report
        assert line == "ALL-RECORDS-DELIVERED", report
        assert states["counter"] == want_counter, report
        assert states["acc"] == want_acc, report
        assert "restarts" in output and nemesis.last_status is not None
        assert sum(v["restarts"] for v in nemesis.last_status.vertices) > 0  # shown in status
    else:
        assert not exact, f"the control run without redelivery reported no loss: {report}"


def test_stopped_worker_is_declared_dead_and_replaced(tmp_path, cli_env):
    """SIGSTOP a stateful worker: the broker declares it dead after liveness x
    heartbeat, `up` kills the stopped process and restarts it, and the result is exact."""
    n = 20_000
    pipeline = tmp_path / "pipeline.yml"
    pipeline.write_text(
        json.dumps(
            {
                "name": "stopped",
                "settings": {"heartbeat_ms": 200, "liveness": 5},
                "components": {
                    "numbers": {"source": "sequence", "count": n, "rate": 5000},
                    "counter": {"path": str(COMPONENTS / "counter"), "snapshot": "1000 ticks"},
                    "out": {"sink": "jsonl", "path": "out.jsonl"},
                },
                "connections": ["numbers -> counter", "counter -> out"],
            }
        )
    )
    stopped_at = declared = None
    with up_process(
        pipeline, cli_env, "--state-dir", str(tmp_path / "state"), "--backoff-max", "0.25", "--timeout", "60"
    ) as up:
        client = BrokerClient(up.endpoint, timeout_s=1.0)
        deadline = time.monotonic() + 20
        while stopped_at is None and time.monotonic() < deadline:
            v = next(v for v in client.status().vertices if v["name"] == "counter")
            if v["state"] == "running" and v["ticks"] > 2000:
                os.kill(v["pid"], signal.SIGSTOP)
                stopped_at, pid = time.monotonic(), v["pid"]
            time.sleep(0.05)
        assert stopped_at is not None, "the counter never ran"
        while declared is None and time.monotonic() < deadline:
            v = next(v for v in client.status().vertices if v["name"] == "counter")
            if v["pid"] != pid or v["state"] != "running":
                declared = time.monotonic() - stopped_at
            time.sleep(0.02)
        rc = up.proc.wait(60)
    output = up.output
    assert rc == 0, output[-3000:]
    # liveness 5 x 200 ms = 1 s: never earlier; later only by scheduling noise
    assert declared is not None and 0.9 <= declared <= 5.0, (declared, output[-2000:])
    assert "lost this worker" in output
    got = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert got == fold_counter(n)[0]
