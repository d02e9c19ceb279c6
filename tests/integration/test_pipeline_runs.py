"""Real worker processes against the real broker over tcp and ipc."""

import pytest

from pipelogic.pipeline import parse_pipeline
from pipelogic.testing import run_pipeline

DOUBLE = "from pipelogic.worker import run\n\ndef f(x):\n    return x * 2\n\nrun(f)\n"
INC = "from pipelogic.worker import run\n\ndef f(x):\n    return x + 1\n\nrun(f)\n"
COUNT = (
    "from pipelogic.worker import run\n\ndef f(x, state):\n    return {'output': [state, x], 'state': state + 1}\n\n"
    "run(f, initial_state=0)\n"
)
SLOW = "import time\nfrom pipelogic.worker import run\n\ndef f(x):\n    time.sleep(0.002)\n    return x\n\nrun(f)\n"
YML = "name: {n}\nworker: {{input_type: Int64, output_type: {o}}}\n"


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_100k_messages_through_three_vertices_once_and_in_order(tmp_path, component, transport):
    component("double", YML.format(n="double", o="Int64"), DOUBLE)
    component("inc", YML.format(n="inc", o="Int64"), INC)
    component("count", YML.format(n="count", o='"(Int64, Int64)"'), COUNT)
    n = 100_000
    p = parse_pipeline(
        {
            "name": "big",
            "components": {
                "src": {"source": "sequence", "count": n},
                "double": {"path": str(tmp_path / "double")},
                "inc": {"path": str(tmp_path / "inc")},
                "count": {"path": str(tmp_path / "count")},
                "out": {"sink": "memory"},
            },
            "connections": ["src -> double", "double -> inc", "inc -> count", "count -> out"],
        },
        tmp_path / "pipeline.yml",
    )
    listen = "tcp://127.0.0.1:0" if transport == "tcp" else f"ipc://{tmp_path}/broker.sock"
    broker = run_pipeline(p, listen=listen, timeout_s=240)
    got = broker.scheduler.vertices["out"].sink.values
    assert len(got) == n
    assert got == [(i, 2 * i + 1) for i in range(n)]  # every message once, in order


def test_slow_consumer_keeps_buffers_bounded(tmp_path, component):
    component("slow", YML.format(n="slow", o="Int64"), SLOW)
    p = parse_pipeline(
        {
            "name": "slow",
            "components": {
                "src": {"source": "sequence", "count": 3000},
                "slow": {"path": str(tmp_path / "slow")},
                "out": {"sink": "memory"},
            },
            "connections": ["src -> slow", "slow -> out"],
        },
        tmp_path / "pipeline.yml",
    )
    broker = run_pipeline(p, timeout_s=120, buffer_capacity=100, credit=16, batch=8)
    sch = broker.scheduler
    assert sch.vertices["out"].sink.values == list(range(3000))
    # the broker's own counters: the fast source was held back by the slow consumer
    assert sch.vertices["slow"].inputs[0].max_len <= 100
    assert broker.max_buffered <= 100 + 16
