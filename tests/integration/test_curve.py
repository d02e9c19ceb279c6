"""CurveZMQ (issue 14): the matrix of clients a broker with keys must refuse, each with a
clear message on the client and a line in the broker's log, while a real pipeline runs
through it and its output stays exact."""

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import zmq

from pipelogic import protocol as P
from pipelogic import transport
from pipelogic.client import BrokerClient
from pipelogic.errors import HandshakeRefused, ProtocolError
from pipelogic.keys import create_broker_key, create_key
from tests.helpers import BrokerProc, listening_ports, run_ended, running_past, wait_until

DOUBLE = Path(__file__).resolve().parents[2] / "examples" / "double"
PIPE = f"""
    name: guarded
    components:
      n: {{source: sequence, count: 6000, rate: 1500}}
      d: {{path: {DOUBLE}}}
      out: {{sink: jsonl, path: ./out.jsonl}}
    connections: [n -> d, d -> out]
"""


@pytest.fixture
def keys(tmp_path):
    folder = tmp_path / "keys"
    create_broker_key(folder)
    create_key(folder, "workers", "d")
    create_key(folder, "workers", "x")  # a worker key for another vertex
    create_key(folder, "operators", "ops")
    create_key(folder, "operators", "temp")  # revoked during the test
    other = tmp_path / "other"  # keys the broker never heard of
    create_broker_key(other)
    create_key(other, "workers", "d")
    return folder, other


def _as(monkeypatch, key: Path | None, server: Path | None) -> None:
    """Make this process's clients use ``key`` against the broker key ``server``."""
    for var in ("PIPELOGIC_KEYS", "PIPELOGIC_CURVE_KEY", "PIPELOGIC_CURVE_SERVER_KEY", "PIPELOGIC_OPERATOR"):
        monkeypatch.delenv(var, raising=False)
    if key is not None:
        monkeypatch.setenv("PIPELOGIC_CURVE_KEY", str(key))
        monkeypatch.setenv("PIPELOGIC_CURVE_SERVER_KEY", str(server))


def test_curve_matrix(tmp_path, cli_env, keys, monkeypatch):
    folder, other = keys
    ops = folder / "operators" / "ops.key_secret"
    server = folder / "broker.key"
    f = tmp_path / "pipeline.yml"
    f.write_text(textwrap.dedent(PIPE))
    broker = BrokerProc(f, cli_env, "--serve-forever", "--keys", str(folder))
    worker = subprocess.Popen(
        [sys.executable, "-m", "pipelogic", "worker", str(DOUBLE)],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(cli_env, PIPELOGIC_BROKER=broker.endpoint, PIPELOGIC_COMPONENT="d", PIPELOGIC_KEYS=str(folder)),
    )
    try:
        _as(monkeypatch, ops, server)
        d = wait_until(lambda: running_past(BrokerClient(broker.endpoint), "d", 100), 30, "the worker to run")

        def refused(key, server_key, msg=None):
            _as(monkeypatch, key, server_key)
            with pytest.raises(HandshakeRefused) as info:
                BrokerClient(broker.endpoint, timeout_s=5).request(msg or P.StatusRequest())
            return str(info.value)

        # An admitted key forging d's results with d's epoch: refused and counted under the key
        # that sent it, not under its victim d (issue 29); nothing lands.
        _as(monkeypatch, folder / "workers" / "x.key_secret", server)
        control_port = int(broker.endpoint.rsplit(":", 1)[1])
        for port in listening_ports(broker.proc.pid):
            if port != control_port:
                push = transport.connect(zmq.Context.instance(), zmq.PUSH, f"tcp://127.0.0.1:{port}")
                push.setsockopt(zmq.LINGER, 2000)
                push.setsockopt(zmq.SNDTIMEO, 2000)  # the CURVE handshake first
                try:
                    push.send_multipart(P.encode(P.Results(d["epoch"], [[10**6, [[0]], None]]), [b"\x01"]))
                except zmq.Again:
                    pass  # a tick socket: its ZAP domain does not admit this key
                push.close()
        _as(monkeypatch, ops, server)
        deadline_refused = time.monotonic() + 10
        while (BrokerClient(broker.endpoint).status().broker.get("refused") or {}).get("worker key 'x'", 0) < 1:
            assert time.monotonic() < deadline_refused, "".join(broker.lines)[-2000:]
            time.sleep(0.05)
        assert "d" not in (BrokerClient(broker.endpoint).status().broker.get("refused") or {})

        # A plaintext client; the wrong broker key; a key the broker does not know.
        assert "requires CurveZMQ keys and this client has none" in refused(None, None)
        assert "is the broker key this client has" in refused(ops, other / "broker.key")
        assert "refused this client's key" in refused(other / "workers" / "d.key_secret", server)

        # An admitted worker key for vertex x registering as d: refused, and d's worker is not fenced.
        _as(monkeypatch, folder / "workers" / "x.key_secret", server)
        with pytest.raises(ProtocolError, match="authorised for x, not d"):
            BrokerClient(broker.endpoint).request(P.Hello("d", "i", 1, [], 1, 1))
        # An operator command with a worker key.
        _as(monkeypatch, folder / "workers" / "d.key_secret", server)
        with pytest.raises(ProtocolError, match="needs an operator key"):
            BrokerClient(broker.endpoint).request(P.StatusRequest())

        # A revoked operator key: admitted, then refused within the broker's reread (1 s).
        temp = folder / "operators" / "temp.key_secret"
        _as(monkeypatch, temp, server)
        assert BrokerClient(broker.endpoint).status().pipeline == "guarded"
        (folder / "operators" / "temp.key").unlink()
        temp.rename(tmp_path / "temp.key_secret")  # the client keeps its copy
        time.sleep(1.5)
        assert "refused this client's key" in refused(tmp_path / "temp.key_secret", server)

        _as(monkeypatch, ops, server)
        client = BrokerClient(broker.endpoint)
        st = wait_until(lambda: run_ended(client), 90, "the run to end")
        assert st.state == "done", st.error
        assert worker.wait(60) == 0
        assert st.vertices[1]["restarts"] == 0  # never fenced by the refused Hello
        assert broker.stop() == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate(timeout=10)
        broker.stop(kill=True)
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().split()]
    assert out == [2 * i for i in range(6000)]
    log = "".join(broker.lines)
    assert "keys: refused a connection" in log  # the unknown and the revoked key
    # The Hello as d with x's key is refused (the client saw why, above) and counted under x;
    # its line is not logged again: refusals are logged once per key per interval.
    assert "refused a message from worker key 'x'" in log and "worker key 'x': 2" in log  # the final table's count
    assert "needs an operator key" in log


def test_a_broker_on_a_public_address_without_keys_warns(tmp_path, cli_env):
    f = tmp_path / "pipeline.yml"
    f.write_text(textwrap.dedent(PIPE))
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend_stub", str(f), "--listen", "tcp://0.0.0.0:0"],
        env=cli_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "without keys" in line:
                break
        assert "without keys: anyone who can reach it can register as a vertex" in "".join(lines)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
