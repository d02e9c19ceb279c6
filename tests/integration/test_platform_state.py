"""A state that is not plain data, snapshotted through state_codec, across a crash."""

import json
import textwrap
from pathlib import Path

from tests.helpers import run_up

MAIN = """
    import os
    from collections import deque
    from pathlib import Path
    from pipelogic.worker import run

    MARK = Path(__file__).parent / "crashed-once"

    class Window:
        def __init__(self, items=()):
            self.items = deque(items, maxlen=3)

    def f(x, state):
        if x == 25 and not MARK.exists():
            MARK.write_text("")
            os._exit(9)  # a crash after the snapshot of tick 24
        state.items.append(x)
        return {"output": sum(state.items), "state": state}

    run(f, initial_state=Window(), state_codec=(lambda w: list(w.items), Window))
"""


def make(tmp_path: Path, main: str) -> None:
    d = tmp_path / "win"
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text("name: win\nworker: {input_type: Int64, output_type: Int64}\n")
    (d / "src" / "main.py").write_text(textwrap.dedent(main))


PIPE = """
    name: win
    components:
      n: {source: sequence, count: 60}
      win: {path: ./win, snapshot: tick}
      out: {sink: jsonl, path: ./out.jsonl}
    connections: [n -> win, win -> out]
"""


def test_a_state_codec_snapshots_a_deque_and_restores_it_after_a_crash(tmp_path, cli_env):
    make(tmp_path, MAIN)
    r = run_up(tmp_path, PIPE, cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "exited with code 9" in r.stderr and "restored state at tick" in r.stdout + r.stderr
    got = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().split()]
    want = [sum(range(max(0, i - 2), i + 1)) for i in range(60)]
    assert got == want


def test_without_a_state_codec_the_first_snapshot_says_what_to_do(tmp_path, cli_env):
    make(tmp_path, MAIN.replace(", state_codec=(lambda w: list(w.items), Window)", ""))
    r = run_up(tmp_path, PIPE, cli_env)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "cannot snapshot a value of type __main__.Window" in out and "state_codec=(to_plain, from_plain)" in out


CHUNKS = """
    from pipelogic.worker import InputsPullOption, InputsPullRequest, StreamPullShift, run

    REQ = InputsPullRequest(InputsPullOption([StreamPullShift.from_fixed(0, 2, 2)]), flush_at_end=FLUSH)

    def chunks(xs):
        return {"output": [list(xs)], "pull_request": REQ}

    run(chunks, initial_pull_request=REQ)
"""


def test_flush_at_end_delivers_a_short_tail_and_without_it_the_loss_is_reported(tmp_path, cli_env):
    for flush in (True, False):
        base = tmp_path / str(flush)
        d = base / "win"
        (d / "src").mkdir(parents=True)
        (d / "component.yml").write_text("name: win\nworker: {input_type: Int64, output_type: '[Int64]'}\n")
        (d / "src" / "main.py").write_text(textwrap.dedent(CHUNKS).replace("FLUSH", str(flush)))
        r = run_up(base, PIPE.replace("count: 60", "count: 5").replace(", snapshot: tick", ""), cli_env)
        assert r.returncode == 0, r.stdout + r.stderr
        got = [json.loads(x) for x in (base / "out.jsonl").read_text().split("\n") if x]
        if flush:
            assert got == [[0, 1], [2, 3], [4]] and "lost:" not in r.stdout and "with losses" not in r.stdout
        else:
            assert got == [[0, 1], [2, 3]]
            assert "lost: win: 1 message(s) left at the end of a stream" in r.stdout
            assert "with losses (win: 1 message(s) left at the end" in r.stdout
