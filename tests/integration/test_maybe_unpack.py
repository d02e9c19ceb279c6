"""A Maybe<t> producer feeds a consumer of t through an unpack adapter: Nothing dropped,
counted and visible (the platform's behaviour)."""

import json
import textwrap
from pathlib import Path

import pytest

from pipelogic.errors import DefinitionError
from pipelogic.pipeline import load_pipeline
from tests.helpers import run_up


def comp(base: Path, name: str, yml: str, main: str) -> None:
    d = base / name
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text(textwrap.dedent(yml))
    (d / "src" / "main.py").write_text(textwrap.dedent(main))


def setup(tmp_path: Path, consumer_input: str = "Int64", streaming: bool = False) -> str:
    comp(
        tmp_path,
        "maybe",
        "name: maybe\nworker: {input_type: Int64, output_type: 'Maybe<Int64>'}\n",
        "from pipelogic.worker import run\n\nrun(lambda x: None if x % 3 else x)\n",
    )
    if streaming:
        main = """
            from pipelogic.worker import InputsPullOption, InputsPullRequest, StreamPullShift, run

            REQ = InputsPullRequest(InputsPullOption([StreamPullShift.from_fixed(0, 1, 4)]))

            def f(xs):
                assert None not in xs
                return {"output": [sum(xs)] if xs else [], "pull_request": REQ}

            run(f, initial_pull_request=REQ)
        """
    else:
        main = "from pipelogic.worker import run\n\ndef f(x):\n    assert x is not None\n    return x * 10\n\nrun(f)\n"
    comp(tmp_path, "use", f"name: use\nworker: {{input_type: {consumer_input}, output_type: Int64}}\n", main)
    return """
        name: unpack
        components:
          n: {source: sequence, count: 30}
          maybe: {path: ./maybe}
          use: {path: ./use}
          out: {sink: jsonl, path: ./out.jsonl}
        connections: [n -> maybe, maybe -> use, use -> out]
    """


def test_nothing_is_dropped_before_a_consumer_of_t_and_counted(tmp_path, cli_env):
    r = run_up(tmp_path, setup(tmp_path), cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().split()] == [x * 10 for x in range(0, 30, 3)]
    assert "lost: use: 20 Nothing value(s) dropped by a Maybe unpack adapter" in r.stdout


def test_a_streaming_consumer_gets_lists_without_nothing(tmp_path, cli_env):
    r = run_up(tmp_path, setup(tmp_path, streaming=True), cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().split()]
    assert sum(got) == sum(range(0, 30, 3))


def test_the_adapter_is_only_for_maybe_of_the_consumers_type(tmp_path):
    setup(tmp_path, consumer_input="String")
    f = tmp_path / "p.yml"
    f.write_text(
        textwrap.dedent("""
        name: unpack
        components:
          n: {source: sequence, count: 3}
          maybe: {path: ./maybe}
          use: {path: ./use}
          out: {sink: null}
        connections: [n -> maybe, maybe -> use, use -> out]
    """)
    )
    with pytest.raises(DefinitionError, match=r"maybe\.0 produces Maybe<Int64> but use\.0 expects String"):
        load_pipeline(f)
