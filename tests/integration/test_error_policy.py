"""on_error per vertex: `skip` dead-letters the tick and goes on; `fail` stops with the cause."""

import json

import pytest

from pipelogic.errors import PipelineFailed
from pipelogic.pipeline import parse_pipeline
from pipelogic.testing import run_pipeline

MAIN = """
from pipelogic.worker import run

def picky(x, state):
    if x % 4 == 3:
        raise ValueError(f"no threes please: {x}")
    return {"output": state + x, "state": state + x}

run(picky, initial_state=0)
"""


def pipeline(tmp_path, comp, on_error):
    return parse_pipeline(
        {
            "name": "errors",
            "components": {
                "src": {"source": "sequence", "count": 10},
                "p": {"path": str(comp), "on_error": on_error},
                "out": {"sink": "memory"},
            },
            "connections": ["src -> p", "p -> out"],
        },
        tmp_path / "pipeline.yml",
    )


@pytest.fixture
def picky(component):
    return component("picky", "name: picky\nworker: {input_type: Int64, output_type: Int64}\n", MAIN)


def test_skip_writes_dead_letters_and_goes_on(tmp_path, picky):
    broker = run_pipeline(pipeline(tmp_path, picky, "skip"))
    kept = [x for x in range(10) if x % 4 != 3]
    assert broker.scheduler.vertices["out"].sink.values == [sum(kept[: i + 1]) for i in range(len(kept))]
    letters = [
        json.loads(line) for line in (tmp_path / ".pipelogic" / "dead-letter" / "p.jsonl").read_text().splitlines()
    ]
    assert [(d["vertex"], d["tick"], d["inputs"]) for d in letters] == [("p", 3, [3]), ("p", 7, [7])]
    assert all("no threes please" in d["error"] and "ValueError" in d["traceback"] for d in letters)
    assert broker.scheduler.vertices["p"].errors == 2


def test_fail_stops_the_pipeline_with_the_traceback(tmp_path, picky):
    with pytest.raises(PipelineFailed) as exc:
        run_pipeline(pipeline(tmp_path, picky, "fail"))
    msg = str(exc.value)
    assert "vertex p failed on tick 3" in msg and "no threes please: 3" in msg and "Traceback" in msg
