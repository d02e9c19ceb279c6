"""Bad definitions and bad results give errors that say what was expected, what was got and where."""

import pytest

from pipelogic.errors import DefinitionError, PipelineFailed
from pipelogic.pipeline import load_pipeline
from pipelogic.testing import run_component


def write(tmp_path, text):
    f = tmp_path / "pipeline.yml"
    f.write_text(text)
    return f


def test_bad_pipeline_names_the_edge_and_both_types(tmp_path, component):
    component("s", "name: s\nworker: {input_type: String, output_type: String}\n", "")
    f = write(
        tmp_path,
        "name: x\ncomponents:\n  n: {source: sequence, count: 1}\n  s: {path: ./s}\n"
        "  o: {sink: null}\nconnections: [n -> s, s -> o]\n",
    )
    with pytest.raises(DefinitionError) as err:
        load_pipeline(f)
    msg = str(err.value)
    assert "pipeline.yml:6:15: connections[0]: n -> s: n.0 produces Int64 but s.0 expects String" in msg


def test_bad_component_names_file_and_key(tmp_path, component):
    component(
        "c",
        "name: c\nworker:\n  input_type: '[Int32'\n  output_type: Int64\n"
        "  config_schema: {k: {type: Int64, default: x}}\n",
        "",
    )
    f = write(tmp_path, "name: x\ncomponents:\n  c: {path: ./c}\n")
    with pytest.raises(DefinitionError) as err:
        load_pipeline(f)
    problems = err.value.problems
    assert any("c/component.yml:3:15: worker.input_type: expected ']' at column 7 in \"[Int32\"" in p for p in problems)
    assert any("worker.config_schema.k.default: expected Int64" in p for p in problems)


def test_missing_config_value_names_vertex_key_and_type(tmp_path, component):
    component(
        "c", "name: c\nworker:\n  input_type: Int64\n  output_type: Int64\n  config_schema: {t: {type: Double}}\n", ""
    )
    f = write(
        tmp_path,
        "name: x\ncomponents:\n  n: {source: sequence, count: 1}\n  c: {path: ./c}\n  o: {sink: null}\n"
        "connections: [n -> c, c -> o]\n",
    )
    with pytest.raises(
        DefinitionError, match=r"components\.c\.config\.t: no value and no default \(declared type Double\)"
    ):
        load_pipeline(f)
    f.write_text(f.read_text().replace("{path: ./c}", "{path: ./c, config: {t: abc}}"))
    with pytest.raises(DefinitionError, match=r"components\.c\.config\.t: declared type Double, value 'abc'"):
        load_pipeline(f)


def test_wrong_return_shape(tmp_path):
    def f(message, state):
        return {"output": 1}

    with pytest.raises(
        PipelineFailed,
        match=r"vertex component failed on tick 0: expected a dict with keys \['output', 'state'\], got keys \['output'\] \(missing \['state'\]\)",
    ):
        run_component(f, [[1]], input_types=["Int64"], output_types=["Int64"], initial_state=0)

    with pytest.raises(PipelineFailed, match="expected a tuple of 2 outputs in declared order, got list"):
        run_component(lambda x: [x, x], [[1]], input_types=["Int64"], output_types=["Int64", "Int64"])


def test_wrong_output_type_names_vertex_output_and_path(tmp_path):
    def f(x):
        return {
            "boxes": [
                {
                    "class": {"id": 1, "name": "a"},
                    "confidence": 0.5,
                    "rectangle": {"x": "abc", "y": 0.0, "width": 1.0, "height": 1.0},
                }
            ]
        }

    with pytest.raises(
        PipelineFailed,
        match=r"vertex component failed on tick 0: output 0: boxes\[0\]\.rectangle\.x: expected Double, got str \('abc'\) \(returned by .*\.f at .*test_errors\.py:\d+\)",
    ):
        run_component(f, [[1]], input_types=["Int64"], output_types=["{boxes: [BoundingBox]}"])


def test_user_exception_is_carried_with_vertex_and_tick():
    def f(x):
        if x == 3:
            raise KeyError("boom")
        return x

    with pytest.raises(PipelineFailed) as err:
        run_component(f, [[1, 2, 3]], input_types=["Int64"], output_types=["Int64"])
    assert "vertex component failed on tick 2" in str(err.value) and "KeyError" in str(err.value)
    assert isinstance(err.value.__cause__.__cause__, KeyError)  # the user's exception, not swallowed


def test_reading_an_undeclared_config_key_fails_fast(tmp_path):
    from pipelogic.worker import config

    def f(x):
        return int(config.nope)

    with pytest.raises(PipelineFailed, match="config has no parameter 'nope'"):
        run_component(f, [[1]], input_types=["Int64"], output_types=["Int64"])
    assert config is not None


def test_run_component_reports_a_worker_that_cannot_start_with_its_own_error(component):
    """Issue 25, item 5: the failure read "a worker process exited with code 2: [...]"
    and the cause was somewhere in the 80 lines above it."""
    cdir = component(
        "broken", "name: broken\nworker: {input_type: Int64, output_type: Int64}\n", "import not_a_module_xyz\n"
    )
    with pytest.raises(PipelineFailed) as err:
        run_component(cdir, [[1, 2, 3]], timeout_s=60)
    text = str(err.value)
    assert text.startswith("worker component exited with code 2:\nerror: the component failed to start"), text
    assert "ModuleNotFoundError: No module named 'not_a_module_xyz'" in text
    assert 'main.py", line 1' in text  # the user's frame
