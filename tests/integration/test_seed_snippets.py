"""Each seed snippet, pasted unchanged into src/main.py, runs under `pipelogic up`."""

import json

import pytest

from tests.helpers import run_up

DOUBLE = """
from pipelogic.worker import run

def double(x):
    return x * 2

run(double)
"""

COUNTER = """
from pipelogic.worker import run

def counter(message, state):
    new_state = state + 1
    return {"output": new_state, "state": new_state}

run(counter, initial_state=0)
"""

CONFIG = """
from pipelogic.worker import config

threshold = float(config.threshold)
mean = tuple(config.mean)             # (Double, Double, Double) -> tuple of floats
language = str(config.language)

from pipelogic.worker import run

def f(x):
    return f"{language}:{threshold}:{mean[0]}:{x}"

run(f)
"""

MULTI = """
from pipelogic.cv import BoundingBox, DetectedClass, Image, Rectangle
from pipelogic.worker import run

def detect(x):
    return [BoundingBox(DetectedClass(x, "c"), 0.5, Rectangle(0, 0, 1, 1))], Image(width=1, height=1, format="GRAY", data=bytes([x]))

run(detect)
"""


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_sync_and_stateful_snippets(tmp_path, component, cli_env):
    component("double", "name: double\nworker: {input_type: Int64, output_type: Int64}\n", DOUBLE)
    component("counter", "name: counter\nworker: {input_type: Int64, output_type: Int64}\n", COUNTER)
    r = run_up(
        tmp_path,
        """
        name: seed
        components:
          n: {source: sequence, count: 500, start: 1}
          double: {path: ./double}
          counter: {path: ./counter}
          d: {sink: jsonl, path: ./out/d.jsonl}
          c: {sink: jsonl, path: ./out/c.jsonl}
        connections: [n -> double, double -> d, n -> counter, counter -> c]
    """,
        cli_env,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert lines(tmp_path / "out/d.jsonl") == [2 * i for i in range(1, 501)]
    assert lines(tmp_path / "out/c.jsonl") == list(range(1, 501))
    assert "double" in r.stdout and "done" in r.stdout


def test_config_snippet(tmp_path, component, cli_env):
    component(
        "cfg",
        """
        name: cfg
        worker:
          input_type: Int64
          output_type: String
          config_schema:
            threshold: {type: Double}
            mean: {type: "(Double, Double, Double)", default: [0.5, 0.5, 0.5]}
            language: {type: String, default: en}
    """,
        CONFIG,
    )
    r = run_up(
        tmp_path,
        """
        name: cfg
        components:
          n: {source: values, type: Int64, values: [1, 2]}
          cfg: {path: ./cfg, config: {threshold: 0.25, language: fr}}
          o: {sink: jsonl, path: ./out/o.jsonl}
        connections: [n -> cfg, cfg -> o]
    """,
        cli_env,
    )
    assert r.returncode == 0, r.stderr
    assert lines(tmp_path / "out/o.jsonl") == ["fr:0.25:0.5:1", "fr:0.25:0.5:2"]


def test_multi_output_snippet(tmp_path, component, cli_env):
    component("det", "name: det\nworker:\n  input_type: Int64\n  output_types: ['[BoundingBox]', Image]\n", MULTI)
    r = run_up(
        tmp_path,
        """
        name: multi
        components:
          n: {source: sequence, count: 3}
          det: {path: ./det}
          boxes: {sink: jsonl, path: ./out/boxes.jsonl}
          images: {sink: jsonl, path: ./out/images.jsonl}
        connections: [n -> det, det.0 -> boxes, det.1 -> images]
    """,
        cli_env,
    )
    assert r.returncode == 0, r.stderr
    boxes = lines(tmp_path / "out/boxes.jsonl")
    assert [b[0]["class"]["id"] for b in boxes] == [0, 1, 2]
    assert lines(tmp_path / "out/images.jsonl")[2] == {"width": 1, "height": 1, "format": "GRAY", "data": "Ag=="}


def test_crashing_worker_fails_the_run_with_the_cause(tmp_path, component, cli_env):
    component(
        "bad",
        "name: bad\nworker: {input_type: Int64, output_type: Int64}\n",
        "from pipelogic.worker import run\n\ndef f(x):\n    return 1 // (x - 2)\n\nrun(f)\n",
    )
    r = run_up(
        tmp_path,
        """
        name: crash
        components:
          n: {source: sequence, count: 5}
          bad: {path: ./bad}
          o: {sink: null}
        connections: [n -> bad, bad -> o]
    """,
        cli_env,
    )
    assert r.returncode != 0
    assert "vertex bad failed on tick 2" in r.stderr and "ZeroDivisionError" in r.stderr


@pytest.mark.parametrize("bad", ["connections: [n -> nowhere]"])
def test_up_rejects_a_bad_pipeline(tmp_path, cli_env, bad):
    r = run_up(tmp_path, f"name: x\ncomponents:\n  n: {{source: sequence, count: 1}}\n{bad}\n", cli_env)
    assert r.returncode == 2 and "unknown consumer vertex 'nowhere'" in r.stderr
