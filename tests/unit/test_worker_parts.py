"""Worker pieces without sockets: signature inspection, result checks, virtual streams."""

import threading

import pytest

from pipelogic.errors import OutputTypeError, ReturnShapeError, WorkerError
from pipelogic.types import InputsPullOption, InputsPullRequest, StreamPullShift, create_type
from pipelogic.worker._step import Step, inspect_function
from pipelogic.worker._virtual import VirtualInputStream, VirtualOutputStream, VirtualStreamClosed


def mode_of(fn, n_in=1, n_out=1, **kw):
    opts = {"stateful": False, "streaming": False, "virtual_output": False, **kw}
    return inspect_function(fn, n_in, n_out, component="c", **opts)


def test_signature_checks():
    with pytest.raises(TypeError, match="takes 2 positional input\\(s\\) but component.yml declares 1"):
        mode_of(lambda a, b: a)
    with pytest.raises(TypeError, match="must accept a `state` parameter"):
        mode_of(lambda a: a, stateful=True)
    with pytest.raises(TypeError, match="pass initial_state"):
        mode_of(lambda a, state: a)
    with pytest.raises(TypeError, match="must take a `virtual_input` parameter"):
        mode_of(lambda: 1, n_in=0)
    m = mode_of(lambda virtual_input: 1, n_in=0)
    assert m.source and m.features() == ["virtual_input"]


def step(fn, outs=("Int64",), initial=None, **kw):
    return Step(fn, mode_of(fn, n_out=len(outs), **kw), [create_type(t) for t in outs], "v", initial)


def test_result_checks():
    with pytest.raises(ReturnShapeError, match="expected a tuple of 2 outputs"):
        step(lambda x: x, outs=("Int64", "Int64")).call([1], None, 0)
    with pytest.raises(ReturnShapeError, match="got list"):
        step(lambda x, state: [x], stateful=True).call([1], None, 0)
    with pytest.raises(OutputTypeError, match="vertex v: output 0: expected Int64, got str"):
        step(lambda x: "a").call([1], None, 0)
    req = InputsPullRequest(InputsPullOption([StreamPullShift.from_fixed(0, 1, 1)]))
    with pytest.raises(ReturnShapeError, match="output 0 must be a list"):
        step(lambda xs: {"output": 1, "pull_request": req}, streaming=True).call([[1]], None, 0)
    with pytest.raises(ReturnShapeError, match="'pull_request' must be an InputsPullRequest"):
        step(lambda xs: {"output": [], "pull_request": None}, streaming=True).call([[1]], None, 0)
    with pytest.raises(WorkerError, match="raised ZeroDivisionError on tick 7") as err:
        step(lambda x: 1 // 0).call([1], None, 7)
    assert isinstance(err.value.__cause__, ZeroDivisionError)


def test_stateful_step_keeps_state():
    s = step(lambda x, state: {"output": state + x, "state": state + x}, stateful=True, initial=10)
    s.call([1], None, 0)
    assert s.call([2], None, 1).outputs == [[(b"\x0d",)]] and s.state == 13


def test_special_parameters_are_bound_by_name_wherever_they_are():
    # The platform's older docs put them first; a **kwargs function receives them too.
    s = step(lambda state, x: {"output": state + x, "state": state + x}, stateful=True, initial=10)
    assert s.call([1], None, 0).outputs == [[(b"\x0b",)]] and s.state == 11

    def both(virtual_input, state, x, y=5):
        return {"output": state + x + y + len(virtual_input), "state": state}

    s = Step(both, mode_of(both, n_in=2, stateful=True), [create_type("Int64")], "v", 100)
    assert s.call([1, 2], ["a"], 0).outputs == [[(b"\x68",)]]  # 100 + 1 + 2 + 1

    def kw(x, **extra):
        return {"output": x + extra["state"], "state": extra["state"] + 1}

    s = step(kw, stateful=True, initial=3)
    assert s.mode.stateful and s.call([1], None, 0).outputs == [[(b"\x04",)]] and s.state == 4
    src = mode_of(lambda **kw: 1, n_in=0)
    assert src.source

    def star(state, *xs):
        return {"output": sum(xs) + state, "state": state}

    s = Step(star, mode_of(star, n_in=3, stateful=True), [create_type("Int64")], "v", 1)
    assert s.call([1, 2, 3], None, 0).outputs == [[(b"\x07",)]]


def test_virtual_in_non_blocking_drops_and_counts():
    q = VirtualInputStream(maxsize=3)
    q.push(1, 2, 3, 4, 5, blocking=False)
    assert len(q) == 3 and q.dropped == 2
    assert q.take(1, 5) == [2, 3]
    q.close()
    assert q.exhausted()
    with pytest.raises(VirtualStreamClosed):
        q.push(9)


def test_virtual_in_blocking_waits_for_room():
    q = VirtualInputStream(maxsize=1)
    q.push(1)
    done = threading.Event()
    t = threading.Thread(target=lambda: (q.push(2), done.set()))
    t.start()
    assert not done.wait(0.1)  # blocked while full
    assert q.take(0, 1) == [1]
    assert done.wait(5)
    t.join()
    assert q.take(0, 1) == [2] and q.dropped == 0


def test_virtual_out_in_order_with_acks_and_backpressure():
    out = VirtualOutputStream(max_unacked=2)
    got, tags = [], []
    gate = threading.Event()

    def cb(item, tag):
        got.append(item)
        tags.append(tag)
        gate.set()

    out.set_on_push(cb)
    emitted = threading.Event()
    t = threading.Thread(target=lambda: (out.emit([1, 2, 3, 4]), emitted.set()))
    t.start()
    assert gate.wait(5)
    threading.Event().wait(0.1)
    assert got == [1, 2] and tags == [0, 1]  # two unacknowledged: the third waits...
    assert not emitted.is_set() and out.would_block(1)  # ...and so does the tick emitting it
    out.ack(tags[0])
    out.ack(tags[1])
    for _ in range(50):
        if len(got) == 4:
            break
        threading.Event().wait(0.02)
    assert got == [1, 2, 3, 4] and emitted.wait(5)
    t.join()
    assert out.drain(0.2) == 2  # 2 and 3 still unacknowledged at the end
    out.ack(2)
    out.ack(3)
    assert out.drain(1) == 0


def test_virtual_out_callback_errors_are_kept():
    out = VirtualOutputStream()
    out.set_on_push(lambda item: 1 // 0)
    out.emit([1])
    out.drain(5)
    assert isinstance(out.error, ZeroDivisionError)


def test_virtual_out_without_a_callback_keeps_the_newest_and_counts_the_rest():
    out = VirtualOutputStream(queue_size=3)
    out.emit([1, 2])
    out.emit([3, 4, 5])
    assert out.lost == 2 and out.unclaimed() == 3 and not out.would_block(10)
    got: list = []
    done = threading.Event()
    out.set_on_push(lambda item: (got.append(item), item == 5 and done.set()))
    assert done.wait(5) and got == [3, 4, 5] and out.unclaimed() == 0
    assert out.drain(5) == 0
