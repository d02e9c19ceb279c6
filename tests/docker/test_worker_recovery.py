"""Workers in containers: killed, stopped and started before their broker, with state on
named volumes; every output exactly once and in order."""

from __future__ import annotations

import re
import time

import yaml

from tests.docker.dockerlib import (
    compose_for,
    counter_fold,
    lines,
    slow_counter_pipeline,
    wait_for,
)


def restored_ticks(logs: str) -> list[int]:
    return [int(t) for t in re.findall(r"restored state at tick (\d+)", logs)]


def kill_mid_stream(tmp_path, project, n: int, service: str):
    """Run the slow counter pipeline, SIGKILL ``service``'s container (no snapshot, no
    goodbye) a third into the stream, let it come back, and wait for the end."""
    pipeline = slow_counter_pipeline(tmp_path, n, 4000)
    out = pipeline.parent / "out" / "sums.jsonl"
    p = project(compose_for(pipeline))
    p.compose("up", "-d")
    wait_for(lambda: len(lines(out)) > n // 3, 60, "a third of the stream", lambda: p.logs("broker"))
    victim = p.container(service)
    victim.kill()
    # Docker takes `docker kill` for a manual stop: no restart policy restarts it (a crash
    # or an OOM kill is restarted). The operator brings it back with the command that
    # docs/containers.md gives, run here as written.
    wait_for(lambda: _settled(victim), 15, f"the {service} container to exit")
    if victim.status == "exited":
        p.compose("start", service)
        victim.reload()
    assert victim.status == "running", victim.status
    assert p.wait_exit("broker") == 0, p.logs("broker")
    return p, out


def test_docker_kill_of_a_stateful_worker_continues_its_state_from_the_volume(tmp_path, project):
    n = 20_000
    p, out = kill_mid_stream(tmp_path, project, n, "counter")
    assert [int(x) for x in lines(out)] == counter_fold(n)
    ticks = restored_ticks(p.logs("counter"))
    assert ticks and ticks[-1] > 0, p.logs("counter")  # continued, not restarted from empty
    assert p.final_status()["counter"]["restarts"] == 1


def _settled(c) -> bool:
    """Exited and left so (20.10), or restarted by its policy (an engine that does)."""
    c.reload()
    return c.status == "exited" or (c.status == "running" and c.attrs["RestartCount"] > 0)


def test_docker_stop_snapshots_and_exits_0_within_the_grace_period(tmp_path, project, engine, runtime_image):
    n = 15_000
    pipeline = slow_counter_pipeline(tmp_path, n, 3000, snapshot="off")  # only the stop snapshots
    out = pipeline.parent / "out" / "sums.jsonl"
    p = project(compose_for(pipeline))
    p.compose("up", "-d")
    wait_for(lambda: len(lines(out)) > 2000, 60, "the first outputs", lambda: p.logs("broker"))
    counter = p.container("counter")
    t0 = time.monotonic()
    counter.stop(timeout=10)
    stopped_in = time.monotonic() - t0
    counter.reload()
    # 0, not 137: it exited by itself, long before Docker's SIGKILL at 10 s.
    assert counter.attrs["State"]["ExitCode"] == 0, (stopped_in, p.logs("counter"))
    listing = engine.containers.run(
        runtime_image,
        ["-c", "ls /state/counter"],
        entrypoint="sh",
        remove=True,
        volumes={p.volume("counter"): {"bind": "/state", "mode": "ro"}},
    )
    assert b"snapshot-" in listing, listing
    counter.start()
    assert p.wait_exit("broker") == 0, p.logs("broker")
    assert [int(x) for x in lines(out)] == counter_fold(n)
    ticks = restored_ticks(p.logs("counter"))
    assert ticks and ticks[0] >= 2000, p.logs("counter")
    # The stop snapshot covered every tick it answered: nothing was computed twice.
    assert p.final_status()["counter"]["duplicates"] == 0


def test_a_worker_container_started_before_the_broker_joins(tmp_path, project):
    n = 3000
    pipeline = slow_counter_pipeline(tmp_path, n, 100_000)
    out = pipeline.parent / "out" / "sums.jsonl"
    p = project(compose_for(pipeline))
    p.compose("up", "-d", "--no-deps", "counter")
    wait_for(
        lambda: "waiting for the broker" in p.logs("counter"),
        30,
        "the worker to say it waits",
        lambda: p.logs("counter"),
    )
    assert not p.containers("broker")
    p.compose("up", "-d", "broker")
    assert p.wait_exit("broker") == 0, p.logs("broker")
    assert p.wait_exit("counter", 30) == 0, p.logs("counter")
    assert [int(x) for x in lines(out)] == counter_fold(n)
    assert p.logs("counter").count("waiting for the broker") == 1


def test_docker_kill_of_the_broker_resumes_the_run_from_its_volume(tmp_path, project):
    """T14 in containers: the broker container is SIGKILLed mid-stream; `docker-compose
    start broker` brings it back on the broker-state volume, the workers rejoin, every
    output once."""
    n = 20_000
    p, out = kill_mid_stream(tmp_path, project, n, "broker")
    assert p.wait_exit("counter", 30) == 0, p.logs("counter")
    assert [int(x) for x in lines(out)] == counter_fold(n)
    assert "resuming run" in p.logs("broker")
    assert "rejoined the broker" in p.logs("counter")


def test_a_worker_stopped_while_its_broker_is_gone_exits_0_when_dns_does_not_answer(tmp_path, project):
    """Docker's DNS asks the host's servers about a name it no longer knows (the broker's,
    once its container is gone). When they do not answer, libzmq's I/O thread sits in a
    getaddrinfo for seconds at each reconnect, and closing the zmq context waits for it:
    a worker stopped then, or finishing just as its broker exited, hung until Docker's
    SIGKILL (137) or its health check. The worker no longer waits for that lookup."""
    pipeline = slow_counter_pipeline(tmp_path, 1_000_000, 2000)
    out = pipeline.parent / "out" / "sums.jsonl"
    file = compose_for(pipeline)
    spec = yaml.safe_load(file.read_text())
    spec["services"]["counter"]["dns"] = ["192.0.2.1"]  # TEST-NET-1: nothing there answers
    file.write_text(yaml.safe_dump(spec))
    p = project(file)
    p.compose("up", "-d")
    wait_for(lambda: len(lines(out)) > 100, 60, "the first outputs", lambda: p.logs("broker"))
    # Killed (a stopped broker would close its workers) and removed: its name leaves the DNS.
    p.container("broker").remove(force=True)
    wait_for(lambda: "rejoining" in p.logs("counter"), 60, "the counter to miss its broker", lambda: p.logs("counter"))
    counter = p.container("counter")
    counter.stop(timeout=10)  # Docker's default grace period
    counter.reload()
    assert counter.attrs["State"]["ExitCode"] == 0, p.logs("counter")
    assert "stopped while the broker was gone" in p.logs("counter")


SMOOTHER = """\
import os
from collections import Counter, defaultdict, deque
from pathlib import Path
from pipelogic.worker import run

MARKS = Path(os.environ.get("PIPELOGIC_STATE_DIR", "/tmp"))

def smooth(state, x):  # the platform's docs' order: state first; a deque, no codec
    window, seen = state
    for at in (17, 41):
        mark = MARKS / f"killed-at-{at}"
        if x == at and not mark.exists():
            mark.write_text("")
            os._exit(137)  # as killed: no snapshot, no goodbye (PID 1 would ignore its own SIGKILL)
    assert type(window) is deque and window.maxlen == 3 and type(seen) is defaultdict
    window.append(x)
    seen[x % 3] += 1
    return {"output": sum(window) * 1000 + seen[x % 3], "state": state}

run(smooth, initial_state=(deque(maxlen=3), defaultdict(int)))
"""


def test_a_deque_smoother_written_as_on_the_platform_survives_kill_9_in_a_container(tmp_path, project):
    """Issue 24: state is Any on the platform; a deque window killed twice comes back whole."""
    d = tmp_path / "pipe"
    (d / "smooth" / "src").mkdir(parents=True)
    (d / "smooth" / "component.yml").write_text("name: smooth\nworker: {input_type: Int64, output_type: Int64}\n")
    (d / "smooth" / "src" / "main.py").write_text(SMOOTHER)
    (d / "pipeline.yml").write_text(
        "name: smooth\ncomponents:\n  n: {source: sequence, count: 60}\n  smooth: {path: ./smooth, snapshot: tick}\n"
        "  out: {sink: jsonl, path: ./out/smooth.jsonl}\nconnections: [n -> smooth, smooth -> out]\n"
    )
    p = project(compose_for(d / "pipeline.yml"))
    p.compose("up", "-d")
    assert p.wait_exit("broker") == 0, p.logs("broker") + p.logs("smooth")
    rests, want = [0, 0, 0], []
    for i in range(60):
        rests[i % 3] += 1
        want.append(sum(range(max(0, i - 2), i + 1)) * 1000 + rests[i % 3])
    assert [int(x) for x in lines(d / "out" / "smooth.jsonl")] == want
    assert len(restored_ticks(p.logs("smooth"))) == 2, p.logs("smooth")
