"""Streaming mode and virtual input/output against the real broker."""

import json

from pipelogic.pipeline import parse_pipeline
from pipelogic.testing import run_component, run_pipeline
from pipelogic.types import InputsPullOption, InputsPullRequest, StreamPullShift
from tests.helpers import run_up

S = StreamPullShift.from_fixed

STREAMING_SEED = """
from pipelogic.worker import run
from pipelogic.types import InputsPullRequest, InputsPullOption, StreamPullShift

def process(m):
    return m * 10

INITIAL = InputsPullRequest(InputsPullOption([
    StreamPullShift.from_fixed(0, 1, 1),
]))

def chunked(messages):
    return {
        "output": [process(m) for m in messages],
        "pull_request": INITIAL,
    }

run(chunked, initial_pull_request=INITIAL)
"""

VIRTUAL_IN_SEED = """
import threading
from pipelogic.worker import run, virtual_in

frames = iter(range(100))

def grab_frame():
    try:
        return next(frames)
    except StopIteration:
        virtual_in.close()
        raise SystemExit  # the camera is unplugged: ends the producer thread

def from_camera(virtual_input):
    return virtual_input[0]

def producer():
    while True:
        virtual_in.push(grab_frame(), blocking=False)

threading.Thread(target=producer, daemon=True).start()
run(from_camera)
"""

VIRTUAL_OUT_SEED = """
import json
from pipelogic.worker import run, virtual_out

uploaded = open("uploaded.jsonl", "w")

def upload_to_external_system(item):
    uploaded.write(json.dumps(item) + "\\n")
    uploaded.flush()

some_payload = {"seen": True}

def emit_externally(image):
    return {"output": image, "virtual_output": [some_payload]}

def consumer(item):
    upload_to_external_system(item)

virtual_out.set_on_push(consumer)
run(emit_externally, use_virtual_output=True)
"""


def jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_seed_streaming_virtual_in_and_out_snippets_under_up(tmp_path, component, cli_env):
    component("chunked", "name: chunked\nworker: {input_type: Int64, output_type: Int64}\n", STREAMING_SEED)
    component("camera", "name: camera\nworker: {output_type: Int64}\n", VIRTUAL_IN_SEED)
    component("emit", "name: emit\nworker: {input_type: Int64, output_type: Int64}\n", VIRTUAL_OUT_SEED)
    r = run_up(
        tmp_path,
        """
        name: seed4
        components:
          n: {source: sequence, count: 50}
          chunked: {path: ./chunked}
          camera: {path: ./camera}
          emit: {path: ./emit}
          a: {sink: jsonl, path: ./out/a.jsonl}
          b: {sink: jsonl, path: ./out/b.jsonl}
        connections: [n -> chunked, chunked -> a, camera -> emit, emit -> b]
    """,
        cli_env,
    )
    assert r.returncode == 0, r.stderr
    assert jsonl(tmp_path / "out/a.jsonl") == [10 * i for i in range(50)]
    assert jsonl(tmp_path / "out/b.jsonl") == list(range(100))
    assert jsonl(tmp_path / "uploaded.jsonl") == [{"seen": True}] * 100, r.stdout + r.stderr


def test_asymmetric_rates_one_second_in_one_summary_out(tmp_path):
    second = InputsPullRequest(InputsPullOption([S(0, 100, 100)]))

    def summarize(samples, state):
        assert len(samples) == 100
        window = state + samples
        if len(window) == 500:
            return {"output": [sum(window)], "state": [], "pull_request": second}
        return {"output": [], "state": window, "pull_request": second}

    out = run_component(
        summarize,
        [list(range(3050))],
        input_types=["Int64"],
        output_types=["Int64"],
        initial_state=[],
        initial_pull_request=second,
    )
    assert out == [sum(range(k * 500, (k + 1) * 500)) for k in range(6)]  # the last 50 never fill a second


def test_several_options_with_priorities(tmp_path):
    # Option 0: two from a; option 1: one from b. Each tick reports what it received.
    req = InputsPullRequest([InputsPullOption([S(0, 2, 2), S(0, 0, 0)]), InputsPullOption([S(0, 0, 0), S(0, 1, 1)])])

    def f(a, b):
        return {"output": [[*a, *b]], "pull_request": req}

    out = run_component(
        f,
        [list(range(10)), list(range(100, 105))],
        input_types=["Int64", "Int64"],
        output_types=["[Int64]"],
        initial_pull_request=req,
    )
    seen_a = [x for t in out for x in t if x < 100]
    seen_b = [x for t in out for x in t if x >= 100]
    assert seen_a == list(range(10)) and seen_b == list(range(100, 105))  # all, once, in order
    assert all((len(t) == 2 and t[0] < 100) or (len(t) == 1 and t[0] >= 100) for t in out)


def test_skip_drops_messages(tmp_path):
    req = InputsPullRequest(InputsPullOption([S(1, 1, 1)]))  # drop one, keep one
    out = run_component(
        lambda xs: {"output": xs, "pull_request": req},
        [list(range(10))],
        input_types=["Int64"],
        output_types=["Int64"],
        initial_pull_request=req,
    )
    assert out == [1, 3, 5, 7, 9]


def test_malformed_pull_request_names_the_component(tmp_path):
    from pipelogic.errors import PipelineFailed

    good = InputsPullRequest(InputsPullOption([S(0, 1, 1)]))
    bad = InputsPullRequest(InputsPullOption([S(0, 1, 1), S(0, 1, 1)]))
    try:
        run_component(
            lambda xs: {"output": xs, "pull_request": bad},
            [[1, 2]],
            input_types=["Int64"],
            output_types=["Int64"],
            initial_pull_request=good,
        )
    except PipelineFailed as exc:
        assert "component: pull request has 2 shift(s) per option but the component declares 1 input(s)" in str(exc)
    else:
        raise AssertionError("a malformed pull request was accepted")


def test_full_virtual_queue_drops_and_counts_without_blocking(tmp_path, component, monkeypatch):
    component(
        "burst",
        "name: burst\nworker: {output_type: Int64}\n",
        """
        import threading
        from pipelogic.worker import run, virtual_in

        def burst():
            for i in range(5000):
                virtual_in.push(i, blocking=False)  # never blocks: the queue holds 10
            virtual_in.close()

        threading.Thread(target=burst).start()
        run(lambda virtual_input: virtual_input[0])
    """,
    )
    monkeypatch.setenv("PIPELOGIC_VIRTUAL_QUEUE_SIZE", "10")
    p = parse_pipeline(
        {
            "name": "burst",
            "components": {"burst": {"path": str(tmp_path / "burst")}, "o": {"sink": "memory"}},
            "connections": ["burst -> o"],
        },
        tmp_path / "p.yml",
    )
    broker = run_pipeline(p, timeout_s=60)
    got = broker.scheduler.vertices["o"].sink.values
    st = {v["name"]: v for v in broker.scheduler.status().vertices}
    assert 10 <= len(got) < 5000 and got == sorted(got)
    assert st["burst"]["virtual_dropped"] == 5000 - len(got)  # every drop counted, in status


def test_virtual_out_callback_error_is_reported(tmp_path, component):
    from pipelogic.errors import PipelineFailed
    from pipelogic.worker import virtual_out

    def bad(item):
        raise RuntimeError("external system down")

    virtual_out.set_on_push(bad)
    try:
        run_component(
            lambda x: {"output": x, "virtual_output": [x]},
            [list(range(100))],
            input_types=["Int64"],
            output_types=["Int64"],
            use_virtual_output=True,
        )
    except PipelineFailed as exc:
        assert "external system down" in str(exc)
    else:
        raise AssertionError("a failing virtual_out callback was swallowed")
