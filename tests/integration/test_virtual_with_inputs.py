"""A component with regular inputs and a virtual input (issue 12, items 1-3): the broker
chooses options by the virtual queue too, min_pull holds on the virtual input, and
virtual_in.close() ends only the virtual input."""

import json
import textwrap
from pathlib import Path

from tests.helpers import run_up

PIPE = """
    name: vin
    components:
      n: {source: sequence, count: COUNT}
      v: {path: ./v}
      out: {sink: jsonl, path: ./out.jsonl}
    connections: [n -> v, v -> out]
"""


def setup(tmp_path: Path, main: str, count: int = 6) -> str:
    d = tmp_path / "v"
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text("name: v\nworker: {input_type: Int64, output_type: String}\n")
    (d / "src" / "main.py").write_text(textwrap.dedent(main))
    return PIPE.replace("COUNT", str(count))


def outputs(tmp_path: Path) -> list:
    return [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]


def test_an_option_the_virtual_queue_cannot_satisfy_gives_way_to_the_next(tmp_path, cli_env):
    pipe = setup(
        tmp_path,
        """
        from pipelogic.worker import InputsPullOption, InputsPullRequest, StreamPullShift, run

        S = StreamPullShift.from_fixed
        REQ = InputsPullRequest([
            InputsPullOption([S(0, 1, 1)], virtual_shift=S(0, 1, 1)),   # A: needs a virtual message
            InputsPullOption([S(0, 1, 1)]),                               # B: does not
        ])

        def f(xs, virtual_input):
            return {"output": [f"{'A' if virtual_input else 'B'}{xs[0]}"], "pull_request": REQ}

        run(f, initial_pull_request=REQ)   # nothing is ever pushed to virtual_in
    """,
    )
    r = run_up(tmp_path, pipe, cli_env)  # before: A was chosen and the worker waited forever
    assert r.returncode == 0, r.stdout + r.stderr
    assert outputs(tmp_path) == [f"B{i}" for i in range(6)]


def test_min_pull_holds_on_the_virtual_input_and_close_ends_only_it(tmp_path, cli_env):
    pipe = setup(
        tmp_path,
        """
        from pipelogic.worker import InputsPullOption, InputsPullRequest, StreamPullShift, run, virtual_in

        S = StreamPullShift.from_fixed
        REQ = InputsPullRequest(InputsPullOption([S(0, 1, 1)], virtual_shift=S(0, 2, 2)))

        virtual_in.push(100, 101, 102)
        virtual_in.close()

        def f(xs, virtual_input):
            return {"output": [f"{xs}+{virtual_input}"], "pull_request": REQ}

        run(f, initial_pull_request=REQ)
    """,
    )
    r = run_up(tmp_path, pipe, cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert outputs(tmp_path) == ["[0]+[100, 101]"]  # and nothing short of two after it
    assert "lost: v: 5 message(s) left at the end of a stream" in r.stdout


def test_a_synchronous_component_goes_on_after_virtual_in_close(tmp_path, cli_env):
    pipe = setup(
        tmp_path,
        """
        from pipelogic.worker import run, virtual_in

        virtual_in.push("a", "b")
        virtual_in.close()

        def f(x, virtual_input):
            return f"{x}:{''.join(virtual_input)}"

        run(f)
    """,
    )
    r = run_up(tmp_path, pipe, cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = outputs(tmp_path)
    assert len(got) == 6 and "".join(x.split(":")[1] for x in got) == "ab"  # every input, each virtual once
