"""The worker's session through the in-memory transport: no socket, no thread, a scripted
broker. A sync tick, a streaming pull, a snapshot confirmed before it is written, a rejoin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from pipelogic import protocol as P
from pipelogic.component import load_component
from pipelogic.transport.memory import MemoryTransport
from pipelogic.types import InputsPullOption, InputsPullRequest, StreamPullShift, create_type
from pipelogic.worker._session import Session
from pipelogic.worker._settings import WorkerSettings
from pipelogic.worker._step import Step, inspect_function
from pipelogic.worker._virtual import VirtualInputStream, VirtualOutputStream


def welcome(epoch: int, snapshot: str | None = None, applied: int = 0, run: str = "r1") -> P.Welcome:
    return P.Welcome(
        epoch,
        "inproc://unused",
        "inproc://unused",
        ["Int64"],
        ["Int64"],
        {},
        0,
        1000,
        {"credit": 4, "run": run, "broker": "b1", "liveness": 5, "applied": applied, "snapshot": snapshot},
    )


def ticks(epoch: int, values: dict[int, list[int]], extra: Any = None) -> tuple[P.Ticks, list[bytes]]:
    """One Ticks message: tick -> the values of its one input stream."""
    layout = [[t, [[0] * len(vs)], extra] for t, vs in values.items()]
    frames = [msgpack.packb(v) for vs in values.values() for v in vs]
    return P.Ticks(epoch, layout), frames


def results(sent: list[tuple[P.Message, list[Any]]]) -> dict[int, list[Any]]:
    """tick -> the output values the worker sent for it, and its pull request."""
    out: dict[int, list[Any]] = {}
    for msg, payload in sent:
        if isinstance(msg, P.Results):
            for tick, per_stream, extra in P.split_values(msg.layout, payload, 1):
                out[tick] = [msgpack.unpackb(v[0]) for v in per_stream[0]] + ([extra] if extra else [])
    return out


@pytest.fixture
def settings(tmp_path: Path, component) -> WorkerSettings:
    d = component("double", "name: double\nworker: {input_type: Int64, output_type: Int64}\n", "")
    return WorkerSettings(broker="memory", component_dir=d, vertex="double", state_dir=tmp_path / "state")


def serve(session: Session, fn: Any, initial_state: Any = None, pull: InputsPullRequest | None = None) -> None:
    mode = inspect_function(
        fn,
        1,
        1,
        stateful=initial_state is not None,
        streaming=pull is not None,
        virtual_output=False,
        component="double",
    )
    step = Step(fn, mode, [create_type("Int64")], "double", initial_state)
    try:
        session.serve(step, pull, VirtualInputStream(), VirtualOutputStream())
        session.say_goodbye()
    finally:
        session.close()


def kinds(transport: MemoryTransport) -> list[str]:
    return [m.KIND for m, _ in transport.sent]


def test_a_sync_tick_goes_out_as_results(settings):
    def broker(msg: P.Message, payload: list[Any]) -> list[Any]:
        if isinstance(msg, P.Hello):
            assert msg.vertex == "double" and msg.types == [["Int64"], ["Int64"]]
            return [welcome(7)]
        if isinstance(msg, P.Ready):
            return [ticks(7, {0: [3], 1: [4]}), P.Close("finished")]
        return []

    transport = MemoryTransport(broker)
    serve(Session(settings, load_component(settings.component_dir), transport), lambda x: x * 2)
    assert kinds(transport) == ["hello", "ready", "results", "heartbeat", "goodbye"]
    assert results(transport.sent) == {0: [6], 1: [8]}
    assert transport.closed and transport.links[0].closed


@pytest.mark.parametrize("slow", [False, True])
def test_results_of_fast_ticks_share_a_message_a_slow_ticks_goes_out_when_done(settings, slow):
    """A batch of ticks: fast ones are answered by one Results; each slow one (longer than
    the hold bound, as a model is) by a Results of its own as soon as it is done."""
    import time

    from pipelogic.worker._results import HOLD_S

    def broker(msg: P.Message, payload: list[Any]) -> list[Any]:
        if isinstance(msg, P.Hello):
            return [welcome(7)]
        if isinstance(msg, P.Ready):
            return [ticks(7, {0: [1], 1: [2], 2: [3]}), P.Close("finished")]
        return []

    def f(x):
        if slow:
            time.sleep(2 * HOLD_S)
        return x * 2

    transport = MemoryTransport(broker)
    serve(Session(settings, load_component(settings.component_dir), transport), f)
    assert results(transport.sent) == {0: [2], 1: [4], 2: [6]}
    assert kinds(transport).count("results") == (3 if slow else 1)


def test_a_streaming_pull_takes_lists_and_sends_the_next_request(settings):
    req = InputsPullRequest(InputsPullOption([StreamPullShift.from_fixed(1, 2, 2)]))

    def broker(msg: P.Message, payload: list[Any]) -> list[Any]:
        if isinstance(msg, P.Hello):
            return [welcome(1)]
        if isinstance(msg, P.Ready):
            assert msg.features == ["streaming"] and msg.pull_request == req.to_wire()
            return [ticks(1, {0: [1, 2], 1: [3, 4]}), P.Close("finished")]
        return []

    transport = MemoryTransport(broker)
    serve(
        Session(settings, load_component(settings.component_dir), transport),
        lambda xs: {"output": [sum(xs)], "pull_request": req},
        pull=req,
    )
    assert results(transport.sent) == {0: [3, req.to_wire()], 1: [7, req.to_wire()]}


def test_a_snapshot_is_written_only_after_the_broker_confirms_and_then_reported(settings):
    def broker(msg: P.Message, payload: list[Any]) -> list[Any]:
        if isinstance(msg, P.Hello):
            return [welcome(3, snapshot="tick")]
        if isinstance(msg, P.Ready):
            return [ticks(3, {0: [5]}), P.Close("finished")]
        if isinstance(msg, P.Sync):
            # The results of every tick the state reflects went out before the Sync.
            assert "results" in kinds(transport) and session.snaps.count == 0
            return [P.Applied(3, msg.tick)]
        return []

    transport = MemoryTransport(broker)
    session = Session(settings, load_component(settings.component_dir), transport)
    serve(session, lambda x, state: {"output": state + x, "state": state + x}, initial_state=100)
    sent = kinds(transport)
    assert sent.index("results") < sent.index("sync") < sent.index("checkpoint")
    checkpoint = next(m for m, _ in transport.sent if isinstance(m, P.Checkpoint))
    assert checkpoint.tick == 1 and results(transport.sent) == {0: [105]}
    assert session.snaps.count == 1 and session.snaps.store.load().tick == 1


def test_a_lost_broker_is_rejoined_and_the_state_resumes_from_the_snapshot(settings):
    epochs = iter([10, 11])
    hellos: list[P.Hello] = []

    def broker(msg: P.Message, payload: list[Any]) -> list[Any]:
        if isinstance(msg, P.Hello):
            hellos.append(msg)
            return [welcome(next(epochs), snapshot="tick", applied=2 if len(hellos) > 1 else 0)]
        if isinstance(msg, P.Ready):
            if msg.epoch == 10:
                return [ticks(10, {0: [1], 1: [2]})]
            assert msg.resume == 2  # restored from the snapshot of tick 2: replay from there
            return [ticks(11, {2: [3]}), P.Close("finished")]
        if isinstance(msg, P.Sync):
            return [P.Applied(msg.epoch, msg.tick)]
        if isinstance(msg, P.Checkpoint) and msg.epoch == 10 and msg.tick == 2:
            transport.links[0].lost = "vertex double: the broker at memory restarted"
        return []

    transport = MemoryTransport(broker)
    serve(
        Session(settings, load_component(settings.component_dir), transport),
        lambda x, state: {"output": state + x, "state": state + x},
        initial_state=0,
    )
    assert len(hellos) == 2 and len(transport.links) == 2 and transport.links[0].closed
    assert results(transport.sent) == {0: [1], 1: [3], 2: [6]}  # 0+1, 1+2, then 3+3 after the rejoin
