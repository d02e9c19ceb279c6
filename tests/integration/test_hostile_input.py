"""Probes from issue 14 that crashed the broker: each now leaves it serving and the sink
exact (the rest of issue 14, authentication and fuzzing, is still open)."""

import json
import textwrap
import time

import msgpack
import zmq

from pipelogic import protocol as P
from pipelogic import transport
from pipelogic.client import BrokerClient
from tests.helpers import BrokerProc, listening_ports, rss_kb

PIPE = """
    name: probed
    components:
      n: {source: sequence, count: 3000, rate: 1500}
      d: {path: DOUBLE}
      out: {sink: jsonl, path: ./out.jsonl}
    connections: [n -> d, d -> out]
"""


def run_probed(tmp_path, cli_env, probe) -> list:
    import subprocess
    import sys
    from pathlib import Path

    double = Path(__file__).resolve().parents[2] / "examples" / "double"
    f = tmp_path / "pipeline.yml"
    f.write_text(textwrap.dedent(PIPE.replace("DOUBLE", str(double))))
    broker = BrokerProc(f, cli_env, "--serve-forever")  # still there to ask after the probe
    worker = subprocess.Popen([sys.executable, "-m", "pipelogic", "worker", str(double)], stderr=subprocess.DEVNULL,
                              env=dict(cli_env, PIPELOGIC_BROKER=broker.endpoint, PIPELOGIC_COMPONENT="d"))
    try:
        client = BrokerClient(broker.endpoint)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            d = next(v for v in client.status().vertices if v["name"] == "d")
            if d["state"] == "running" and d["ticks"] > 100:
                break
            time.sleep(0.05)
        probe(broker.endpoint, d["epoch"])
        while (st := client.status()).state == "running" and time.monotonic() < deadline + 60:
            time.sleep(0.05)  # the broker still answers, and the run goes on to its end
        assert st.state == "done", st.error
        assert worker.wait(60) == 0
        assert broker.stop() == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        broker.stop(kill=True)
    return [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().split()]


def test_malformed_heartbeats_do_not_crash_the_broker(tmp_path, cli_env):
    def probe(endpoint, epoch):
        client = BrokerClient(endpoint)
        for stats in ({"virtual_dropped": "x", "ticks": -5}, {"virtual_queued": [1], "virtual_closed": "yes"},
                      {"nothing_dropped": 2**64 - 1}, {}):
            reply = client.request(P.Heartbeat(epoch, stats))
            assert isinstance(reply, P.Pong)
        v = next(v for v in client.status().vertices if v["name"] == "d")
        assert v["virtual_dropped"] == 0 and v["nothing_dropped"] == 0  # nonsense is not believed

    assert run_probed(tmp_path, cli_env, probe) == [2 * i for i in range(3000)]


def test_a_deeply_nested_config_value_is_refused_not_fatal(tmp_path, cli_env):
    def probe(endpoint, epoch):
        pk = msgpack.packb
        for depth in (900, 100_000):  # past Python's recursion limit in our checks; past msgpack's stack
            deep = b"\x91" * depth + b"\xc0"  # [[[[...None...]]]]
            header = (b"\x93\x01" + pk("config_set") + b"\x83" + pk("vertex") + pk("d") + pk("values") + b"\x81"
                      + pk("k") + deep + pk("wait_ms") + pk(0))
            reply = transport.request(zmq.Context.instance(), endpoint, [header], 5)
            answer = P.decode(reply)[0] if reply is not None else None
            # Dropped, or refused with a reason: never a crash.
            assert answer is None or isinstance(answer, P.Refuse) or (isinstance(answer, P.ConfigReply) and not answer.ok)

    assert run_probed(tmp_path, cli_env, probe) == [2 * i for i in range(3000)]


def _send_data(broker_pid: int, control: str, messages: list[list[bytes]]) -> None:
    """Send messages to every data port of the broker, as a stranger would find them."""
    control_port = int(control.rsplit(":", 1)[1])
    ctx = zmq.Context.instance()
    for port in listening_ports(broker_pid):
        if port == control_port:
            continue
        push = ctx.socket(zmq.PUSH)  # a PUSH port (a worker's ticks) refuses it in the handshake
        push.setsockopt(zmq.LINGER, 2000)
        push.connect(f"tcp://127.0.0.1:{port}")
        for frames in messages:
            try:
                push.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                break
        push.close()


def test_forged_failures_readies_and_versions_are_refused_and_counted(tmp_path, cli_env):
    """Well-formed but impossible: a Failed for a tick that is not in flight (with a 1 MB
    traceback), a second Ready claiming tick 0, a protocol version of True. Each is
    refused and counted under its peer; nothing reaches the dead-letter file; the run ends
    exact."""
    seen = {}

    def probe(endpoint, epoch):
        pid = int(BrokerClient(endpoint).status().broker["pid"])
        forged = [P.encode(P.Failed(epoch, 10**9, "forged", "x" * 1_000_000, False)) for _ in range(50)]
        forged.append(P.encode(P.Ready(epoch, [], None, 0)))
        forged.append([msgpack.packb([True, "goodbye", {"epoch": epoch}])])
        _send_data(pid, endpoint, forged)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            refused = BrokerClient(endpoint).status().broker.get("refused") or {}
            if refused.get("d", 0) >= 51 and refused.get("unknown", 0) >= 1:
                break
            time.sleep(0.05)
        seen.update(refused)

    assert run_probed(tmp_path, cli_env, probe) == [2 * i for i in range(3000)]
    assert seen.get("d", 0) >= 51 and seen.get("unknown", 0) >= 1, seen
    assert not list(tmp_path.rglob("*dead*")), "a forged failure reached the dead-letter file"


def test_a_flood_of_handshakes_is_refused_quickly_and_the_run_goes_on(tmp_path, cli_env):
    """5,000 Hellos (for vertices the pipeline has not): each refused at once, none of them
    holding a socket; the run ends exact."""
    def probe(endpoint, epoch):
        ctx = zmq.Context.instance()
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(endpoint)
        for i in range(5000):
            dealer.send_multipart([b"", *P.encode(P.Hello(f"nobody{i}", "i", 1, [], 1, 1))])
        answers = []
        deadline = time.monotonic() + 30
        while len(answers) < 5000 and time.monotonic() < deadline:
            if dealer.poll(1000):
                answers.append(P.decode(dealer.recv_multipart()[1:])[0])
        dealer.close(0)
        assert len(answers) == 5000 and all(isinstance(a, P.Refuse) for a in answers)
        assert sum("too many handshakes" in a.reason for a in answers) > 4000  # past the burst, at once

    assert run_probed(tmp_path, cli_env, probe) == [2 * i for i in range(3000)]


def test_a_stranger_on_a_tick_port_receives_no_tick(tmp_path, cli_env):
    """A stray listener on a worker's tick port (a PULL, or a DEALER with its own routing
    id) gets nothing: ticks are addressed to the routing id only the worker was told. Before,
    it took every other tick and the run stalled for good."""
    got = []

    def probe(endpoint, epoch):
        pid = int(BrokerClient(endpoint).status().broker["pid"])
        control_port = int(endpoint.rsplit(":", 1)[1])
        ctx = zmq.Context.instance()
        strays = []
        for port in listening_ports(pid):
            if port != control_port:
                for kind in (zmq.PULL, zmq.DEALER):
                    s = ctx.socket(kind)
                    s.connect(f"tcp://127.0.0.1:{port}")
                    strays.append(s)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for s in strays:
                while s.poll(0):
                    got.append(s.recv_multipart())
            time.sleep(0.01)
        for s in strays:
            s.close(0)

    assert run_probed(tmp_path, cli_env, probe) == [2 * i for i in range(3000)]
    assert got == []


def test_a_100_mb_control_message_is_dropped_before_the_broker_holds_it(tmp_path, cli_env):
    """The control socket takes frames up to the header limit (4 MiB): a 100 MB message
    disconnects its sender at once, the broker's memory does not jump, the run goes on."""
    def probe(endpoint, epoch):
        st = BrokerClient(endpoint).status()
        pid, refused = int(st.broker["pid"]), dict(st.broker["refused"])
        before = rss_kb(pid)
        ctx = zmq.Context.instance()
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 5000)
        dealer.connect(endpoint)
        dealer.send_multipart([b"", bytes(100 * 1024 * 1024)])
        dealer.close()  # lingers until sent (or the broker hung up)
        deadline = time.monotonic() + 2  # plenty for 100 MB over loopback, had it been taken
        while time.monotonic() < deadline:
            st = BrokerClient(endpoint).status()
            assert st.broker["refused"] == refused  # never reached the broker's loop: zmq dropped it
            time.sleep(0.1)
        assert rss_kb(pid) - before < 50 * 1024

    assert run_probed(tmp_path, cli_env, probe) == [2 * i for i in range(3000)]
