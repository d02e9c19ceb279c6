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
from tests.helpers import BrokerProc

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
