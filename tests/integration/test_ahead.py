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
