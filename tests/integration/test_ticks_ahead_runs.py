"""Ticks formed ahead for fast workers at ``credit: 1``, through the real broker and real
worker processes: held at the broker, sent on the Results before them, exact output, and a
worker killed with a tick held gets it replayed once."""

import os
import subprocess
import sys

from pipelogic.pipeline import parse_pipeline
from pipelogic.testing import run_pipeline

YML = "name: {n}\nworker: {{input_type: Int64, output_type: {o}}}\n"
DOUBLE = "from pipelogic.worker import run\nrun(lambda x: x * 2)\n"
COUNT = (
    "from pipelogic.worker import run\n\ndef f(x, state):\n    return {'output': [state, x], 'state': state + 1}\n\n"
    "run(f, initial_state=0)\n"
)
# Dies (as a SIGKILL would: no goodbye) on value 2000 the first time it sees it.
DIES_ONCE = """
import os
from pipelogic.worker import run
MARK = os.environ["DIES_ONCE_MARK"]
def f(x):
    if x == 2000 and not os.path.exists(MARK):
        open(MARK, "w").close()
        os._exit(9)
    return x * 2
run(f)
"""


def chain(tmp_path, n, first):
    return parse_pipeline(
        {
            "name": "ahead",
            "components": {
                "src": {"source": "sequence", "count": n},
                "double": {"path": str(tmp_path / first), "credit": 1},
                "count": {"path": str(tmp_path / "count"), "credit": 1},
                "out": {"sink": "memory"},
            },
            "connections": ["src -> double", "double -> count", "count -> out"],
        },
        tmp_path / "pipeline.yml",
    )


def test_two_workers_at_credit_1_get_ticks_ahead_and_the_output_is_exact(tmp_path, component):
    component("double", YML.format(n="double", o="Int64"), DOUBLE)
    component("count", YML.format(n="count", o='"(Int64, Int64)"'), COUNT)
    n = 3000
    broker = run_pipeline(chain(tmp_path, n, "double"), timeout_s=120)
    assert broker.scheduler.vertices["out"].sink.values == [(i, 2 * i) for i in range(n)]
    # Nearly every tick of both went ahead (not the first ones, before a worker is timed).
    assert broker.ports.released > n
    assert not broker.ports.ahead


def test_a_worker_killed_with_a_tick_held_gets_it_replayed_once(tmp_path, component):
    component("dies", YML.format(n="dies", o="Int64"), DIES_ONCE)
    component("count", YML.format(n="count", o='"(Int64, Int64)"'), COUNT)
    n = 4000
    mark = tmp_path / "died"
    lives = []

    def supervise(endpoint: str) -> None:
        """Start the worker again whenever it dies, as `up` does."""
        env = dict(
            os.environ,
            PIPELOGIC_BROKER=endpoint,
            PIPELOGIC_COMPONENT="double",
            PIPELOGIC_STATE_DIR=str(tmp_path / "state"),
            DIES_ONCE_MARK=str(mark),
        )
        while True:
            code = subprocess.run(
                [sys.executable, "-m", "pipelogic", "worker", str(tmp_path / "dies")], env=env
            ).returncode
            lives.append(code)
            if code == 0:
                return

    broker = run_pipeline(chain(tmp_path, n, "dies"), timeout_s=120, workers={"double": supervise})
    assert lives == [9, 0]
    got = broker.scheduler.vertices["out"].sink.values
    assert got == [(i, 2 * i) for i in range(n)]  # the held tick and the one out: once each, in order
    assert broker.scheduler.vertices["double"].duplicates == 0
    assert broker.ports.released > n


def test_tick_ports_hold_a_tick_until_it_is_released_or_due(tmp_path):
    """TickPorts on real sockets: a held tick reaches nobody until released; one whose
    release was deferred goes at release_deferred; a second hold sends the first rather
    than replace it; a closed port forgets what it held."""
    import zmq

    from backend_stub.tickports import TickPorts
    from pipelogic.transport import recv

    ctx = zmq.Context()
    ports = TickPorts(ctx, "tcp://127.0.0.1:0", lambda epoch, now: None)
    try:
        endpoint, token = ports.open(7)
        worker = ctx.socket(zmq.DEALER)
        worker.setsockopt(zmq.ROUTING_ID, token)
        worker.setsockopt(zmq.LINGER, 0)
        worker.connect(endpoint)
        ports.queue(7, [b"first"])
        while ports.pending:  # until the worker's connection is there
            ports.flush()
        assert worker.poll(5000) and [f.bytes for f in recv(worker)] == [b"first"]

        def got(timeout_ms: int) -> list[bytes] | None:
            return [f.bytes for f in recv(worker)] if worker.poll(timeout_ms) else None

        ports.hold(7, 5, [b"tick 5"])
        ports.flush()
        ports.defer(8)  # another epoch: nothing held for it
        ports.release_deferred()
        assert got(200) is None  # held: not released
        ports.defer(7)
        assert got(200) is None  # deferred: still held
        ports.release_deferred()
        assert got(5000) == [b"tick 5"] and not ports.ahead and not ports.deferred
        ports.hold(7, 6, [b"tick 6"])
        ports.hold(7, 7, [b"tick 7"])  # one at a time: 6 goes out, 7 is held
        assert got(5000) == [b"tick 6"] and got(200) is None
        ports.release(7)
        assert got(5000) == [b"tick 7"]
        assert ports.released == 3
        ports.hold(7, 8, [b"tick 8"])
        ports.close(7, 0.0)
        assert not ports.ahead  # the log replays it to the next incarnation
        ports.hold(7, 9, [b"late"])  # for a closed port: dropped
        assert not ports.ahead
        worker.close(0)
    finally:
        ports.close_all(0)
        ctx.term()
