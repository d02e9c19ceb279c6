"""A worker process as the broker's pure ``Scheduler`` sees it, with no socket: the scheduler
tests hand it the actions the scheduler returns and answer in its name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import msgpack

from backend_stub.vertices import SinkVertex, VertexState
from pipelogic import protocol as P

_V = TypeVar("_V", bound=VertexState)


class FakeWorker:
    """One incarnation (``epoch``) of a worker of a one-input vertex. Ticks sent to it land in
    ``inbox`` as ``(tick, value)``; ``applied_upto`` is the newest tick the broker said it
    holds the results of; ``closed`` once the broker closed it."""

    def __init__(self, epoch: int, name: str = "i") -> None:
        self.epoch = epoch
        self.name = name
        self.inbox: list[tuple[int, Any]] = []
        self.applied_upto = -1
        self.closed = False

    def take(self, action: Any) -> None:
        """Receive one ``send`` action addressed to this worker."""
        msg, payload = P.decode(action.frames)
        if isinstance(msg, P.Ticks):
            for tick, per_input, _ in P.split_values(msg.layout, payload, 1):
                self.inbox.append((tick, msgpack.unpackb(per_input[0][0][0])))
        elif isinstance(msg, P.Applied):
            self.applied_upto = msg.tick
        elif isinstance(msg, P.Close):
            self.closed = True

    @staticmethod
    def results(epoch: int, answers: Iterable[tuple[int, Any]]) -> tuple[P.Results, list[bytes]]:
        """The Results message (and its frames) answering ``(tick, value)`` pairs, one output each."""
        layout, frames = [], []
        for tick, value in answers:
            layout.append([tick, [[0]], None])
            frames.append(msgpack.packb(value))
        return P.Results(epoch, layout), frames


def deliver(actions: Iterable[Any], workers: Mapping[int, FakeWorker]) -> None:
    """Hand each ``send`` action to the worker of its epoch (actions for others are dropped,
    as a fenced or dead worker's would be)."""
    for a in actions:
        w = workers.get(a.epoch) if a.kind == "send" else None
        if w is not None:
            w.take(a)


def accept(s: Any, hello: P.Hello, now: float = 0.0) -> int:
    """The epoch the scheduler ``s`` gives a worker that says ``hello`` (fails on a Refuse)."""
    got = s.hello(hello, now)
    assert not isinstance(got, P.Refuse), got
    return int(got[0])


def sink_values(s: Any, name: str = "out") -> list[Any]:
    """What the built-in sink vertex ``name`` of the scheduler ``s`` has taken so far."""
    return list(vertex(s, name, SinkVertex).sink.values)


def vertex(s: Any, name: str, kind: type[_V]) -> _V:
    """The state of vertex ``name`` of the scheduler ``s``, which must be of class ``kind``."""
    vs = s.vertices[name]
    assert isinstance(vs, kind), f"{name} is a {type(vs).__name__}, not a {kind.__name__}"
    return vs
