"""A live fuzzer (issue 14): random and mutated frames at every socket of a running broker
while a real pipeline runs through it; the broker keeps serving, the sink is exact and the
broker's memory ends near where it started.

Without keys, a peer that sends well-formed messages for a live incarnation (its epoch, its
next tick) or says Hello as one of its vertices is trusted (docs/security.md): the fuzzer
uses epochs no incarnation has and vertex names the pipeline does not, so what it tests is
that nothing else it can send does harm. The messages come from a fixed seed: a failure
replays exactly.
"""

import json
import random
import textwrap

import msgpack
import zmq

from pipelogic import protocol as P
from pipelogic.client import BrokerClient
from tests.helpers import BrokerProc, listening_ports, rss_kb, run_ended, wait_until

COUNT = 6000
PIPE = """
    name: fuzzed
    components:
      n: {source: sequence, count: COUNT, rate: 2000}
      d: {path: DOUBLE}
      out: {sink: jsonl, path: ./out.jsonl}
    connections: [n -> d, d -> out]
"""
STRANGE_EPOCH = 100_000  # far from any real epoch, also after a byte flip


def _valid(rng: random.Random) -> list[bytes]:
    e = STRANGE_EPOCH + rng.randrange(1000)
    value = msgpack.packb(rng.randrange(-(2**63), 2**63))
    choices = [
        lambda: P.encode(P.Results(e, [[rng.randrange(10**6), [[0]], None]], {"ticks": rng.randrange(10)}), [value]),
        lambda: P.encode(P.Ticks(e, [[0, [[0]], None]]), [value]),
        lambda: P.encode(P.Heartbeat(e, {"ticks": rng.randrange(100), "virtual_queued": rng.randrange(5)})),
        lambda: P.encode(P.Failed(e, rng.randrange(100), "x" * rng.randrange(100), "t", rng.random() < 0.5)),
        lambda: P.encode(P.Ready(e, ["stateful"], None, rng.randrange(100))),
        lambda: P.encode(P.Sync(e, rng.randrange(100))),
        lambda: P.encode(P.Checkpoint(e, rng.randrange(100))),
        lambda: P.encode(P.Goodbye(e)),
        lambda: P.encode(P.Finished(e)),
        lambda: P.encode(P.Hello(f"stranger{rng.randrange(10)}", "i", 1, [], 1, 1)),
        lambda: P.encode(P.StatusRequest()),
        lambda: P.encode(P.Tap("d", 0, rng.randrange(10**6), rng.randrange(100))),
        lambda: P.encode(P.ConfigSet("nope", {"k": rng.randrange(10)}, 0)),
    ]
    return [bytes(f) for f in rng.choice(choices)()]


def _mutate(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    out = []
    for f in frames:
        b = bytearray(f)
        for _ in range(rng.randrange(1, 4)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        if rng.random() < 0.2:
            b = b[: rng.randrange(len(b) + 1)]
        out.append(bytes(b))
    if rng.random() < 0.2:
        out.append(rng.randbytes(rng.randrange(50)))
    return out


def _frames(rng: random.Random) -> list[bytes]:
    kind = rng.random()
    if kind < 0.3:
        return [rng.randbytes(rng.randrange(200)) for _ in range(rng.randrange(1, 4))]
    if kind < 0.5:
        return _valid(rng)
    return _mutate(rng, _valid(rng))


def test_a_live_broker_survives_random_and_mutated_frames(tmp_path, cli_env):
    from pathlib import Path

    double = Path(__file__).resolve().parents[2] / "examples" / "double"
    f = tmp_path / "pipeline.yml"
    f.write_text(textwrap.dedent(PIPE.replace("DOUBLE", str(double)).replace("COUNT", str(COUNT))))
    broker = BrokerProc(f, cli_env, "--serve-forever")
    import subprocess
    import sys

    worker = subprocess.Popen(
        [sys.executable, "-m", "pipelogic", "worker", str(double)],
        stderr=subprocess.DEVNULL,
        env=dict(cli_env, PIPELOGIC_BROKER=broker.endpoint, PIPELOGIC_COMPONENT="d"),
    )
    ctx = zmq.Context()
    socks = []
    try:
        client = BrokerClient(broker.endpoint)
        wait_until(
            lambda: next(v for v in client.status().vertices if v["name"] == "d")["ticks"] >= 100,
            30,
            "the worker to run",
        )
        rss_before = rss_kb(broker.proc.pid)
        control_port = int(broker.endpoint.rsplit(":", 1)[1])
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(broker.endpoint)
        socks.append(dealer)
        for port in listening_ports(broker.proc.pid):
            if port != control_port:  # the results socket takes it; tick sockets refuse a PUSH peer
                push = ctx.socket(zmq.PUSH)
                push.setsockopt(zmq.SNDHWM, 100)
                push.connect(f"tcp://127.0.0.1:{port}")
                socks.append(push)
        rng = random.Random(14)
        sent = 0
        for i in range(3000):
            frames = _frames(rng)
            sock = socks[i % len(socks)]
            try:
                if sock is dealer:
                    dealer.send_multipart([b"", *frames], zmq.NOBLOCK)
                    while dealer.poll(0):
                        dealer.recv_multipart()  # answers (Refuse, Pong, status) are not kept
                else:
                    sock.send_multipart(frames, zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                pass  # a socket not connected (a tick port): the message never left
        assert sent >= 1500  # the tick port never takes a PUSH peer: a third of them stay here
        st = wait_until(lambda: run_ended(client), 90, "the run to end")
        assert st.state == "done", st.error
        refused = st.broker.get("refused") or {}
        assert sum(refused.values()) > 500, refused  # they reached the broker, and were counted
        growth_mb = (rss_kb(broker.proc.pid) - rss_before) / 1024
        assert growth_mb < 40, f"the broker grew by {growth_mb:.0f} MB"
        assert worker.wait(60) == 0
        assert broker.stop() == 0
    finally:
        for s in socks:
            s.close(0)
        ctx.term()
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        broker.stop(kill=True)
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().split()]
    assert out == [2 * i for i in range(COUNT)]
