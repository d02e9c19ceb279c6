"""The broker's data model: settings, actions, input buffers, logged ticks, the recovery
journal and a replicated vertex's instances; the state of each vertex is in
:mod:`backend_stub.vertices`. Plain data with the few rules that belong to it; the logic
that moves it is in :mod:`backend_stub.scheduler`, what survives a broker restart in
:mod:`backend_stub.recovery`."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from backend_stub.pacing import Pace
from pipelogic.pipeline import Pipeline, Vertex

__all__ = [
    "COALESCE",
    "Action",
    "Inflight",
    "InputBuffer",
    "Instance",
    "Journal",
    "Settings",
    "Value",
    "implied_starts",
    "value_size",
]

Value = tuple[Any, ...]


COALESCE = 64
"""Ticks ready in the same loop turn share one message up to this many, whatever ``batch``
says (measured at 16 in flight, one tick a message: 0.56-0.57x the ceiling of our message
shape; sharing: 0.77-0.87x; docs/benchmarks.md)."""


@dataclass
class Settings:
    """The flow settings: the pipeline's (``settings:``), and each component vertex's own
    (:meth:`for_vertex`). A slow worker gets less than these (:mod:`backend_stub.pacing`)."""

    buffer_capacity: int = 1024
    buffer_bytes: int = 64 * 1024 * 1024  # per input buffer, besides the message bound
    inflight_bytes: int = 64 * 1024 * 1024  # per worker, besides the credit in ticks
    credit: int = 256
    batch: int = 64  # raises the most ticks one message carries past COALESCE (never lowers it)
    heartbeat_ms: int = 1000
    liveness: int = 5
    redelivery: bool = True  # off: a control setting for tests; lost ticks are not replayed

    @property
    def message_ticks(self) -> int:
        """The most ticks one Ticks message carries: every tick formed in the same loop
        turn shares a message, up to :data:`COALESCE` or ``batch`` if larger. A tick is
        still formed only within the worker's credit, so what a worker sees (each tick
        once, in order, within its credit) is the same as one message a tick; only the
        broker's and the worker's work per message is shared (docs/semantics.md)."""
        return max(self.batch, COALESCE)

    @classmethod
    def from_pipeline(cls, p: Pipeline, **overrides: Any) -> Settings:
        s = cls()
        for k, v in {**p.settings, **{k: v for k, v in overrides.items() if v is not None}}.items():
            if hasattr(s, k):
                setattr(s, k, bool(v) if k == "redelivery" else int(v))
        s.batch = max(1, min(s.batch, s.credit))
        return s

    def for_vertex(self, v: Vertex) -> Settings:
        """These settings with the vertex's own (``credit: 2`` on a component in pipeline.yml)."""
        if not v.flow:
            return self
        s = replace(self)
        for k, n in v.flow.items():
            setattr(s, k, n)
        s.batch = max(1, min(s.batch, s.credit))
        return s


# What the socket loop must do, as the scheduler says it. ``durable`` (on each): the action
# acknowledges state (Applied, the end of a vertex, a stored config); a broker with a
# recovery store carries it out only once that state is committed, so no peer ever acts on
# something a broker restart would forget.


@dataclass(slots=True)
class Send:
    """Send ``frames`` to the worker incarnation ``epoch``. ``ahead`` >= 0: the frames are
    tick ``ahead``, formed ahead of the credit (:func:`backend_stub.forming.forms_ahead`);
    the broker holds it until the worker answers the tick before it."""

    epoch: int
    frames: list[Any]
    durable: bool = False
    ahead: int = -1
    kind: ClassVar[Literal["send"]] = "send"


@dataclass(slots=True)
class Reply:
    """Answer the control client ``client`` (its routing id) with ``frames``."""

    client: Any
    frames: list[Any]
    durable: bool = False
    kind: ClassVar[Literal["reply"]] = "reply"


@dataclass(slots=True)
class CloseWorker:
    """Close the worker incarnation ``epoch``: its tick socket goes."""

    epoch: int
    durable: bool = False
    kind: ClassVar[Literal["close"]] = "close"


Action = Send | Reply | CloseWorker


@dataclass
class InputBuffer:
    """The queue of one input. Messages of the producer's stream are numbered from 0;
    ``consumed`` counts those taken off the front (formed into ticks, skipped or dropped at
    the end), so the queue holds exactly ``consumed .. received-1``."""

    queue: deque[Value] = field(default_factory=deque)
    closed: bool = False
    received: int = 0
    max_len: int = 0
    consumed: int = 0
    nbytes: int = 0  # the payload bytes the queue holds
    last_size: int = 0  # the size of the last value pushed: what the next ones likely weigh
    bytes_in: int = 0  # payload bytes ever pushed (the metrics' bytes per input)
    traced: deque[tuple[int, float]] = field(default_factory=deque)  # (message, born): backend_stub.latency

    def push(self, values: list[Value]) -> None:
        self.queue.extend(values)
        self.received += len(values)
        if len(self.queue) > self.max_len:
            self.max_len = len(self.queue)
        total = size = 0
        for v in values:  # value_size inlined: this runs once per message
            size = len(v[0]) if len(v) == 1 else value_size(v)
            total += size
        self.nbytes += total
        self.bytes_in += total
        self.last_size = size

    def pop(self) -> Value:
        v = self.queue.popleft()
        self.nbytes -= len(v[0]) if len(v) == 1 else value_size(v)
        return v

    def clear(self) -> int:
        """Empty the queue; returns how many values it held (the caller counts them)."""
        n = len(self.queue)
        self.queue.clear()
        self.nbytes = 0
        return n

    def recount(self) -> None:
        """Recompute ``nbytes`` after the queue was rebuilt (a broker restart)."""
        self.nbytes = sum(value_size(v) for v in self.queue)
        self.last_size = value_size(self.queue[-1]) if self.queue else 0


def value_size(v: Value) -> int:
    """The payload bytes of one value (its frames)."""
    if len(v) == 1:
        return len(v[0])
    return sum(len(f) for f in v)


@dataclass
class Inflight:
    """One formed tick: its number, the values of each input, and the virtual shift.
    ``starts[j] = (first, skip, count)``: input j's part is messages ``first+skip ..
    first+skip+count-1`` of its stream (what a restarted broker rebuilds it from)."""

    tick: int
    composition: list[list[Value]]
    extra: Any = None
    starts: list[tuple[int, int, int]] = field(default_factory=list)
    size: int = 0  # payload bytes (the broker holds them until the result comes back)
    born: float = 0.0  # when the earliest marked message it took left its source (backend_stub.latency)


@dataclass
class Journal:
    """What changed since the recovery store's last commit.

    ``values``: per stream (``vertex.k``) with consumers, the messages emitted since, as the
    number of the first and the list of them (a stream's messages are numbered densely, so
    a range costs one list append per message). A built-in source's streams are not here:
    a restarted broker makes those messages again (:func:`regenerated`).

    ``ticks``: the ticks formed that their predecessor does not imply (see
    :func:`implied_starts`): a streaming vertex's, shaped by its pull requests. A tick that
    takes the next message of each input (every synchronous tick, and every tick of a
    virtual source, which takes none) is re-formed from the tick before it."""

    values: dict[str, tuple[int, list[Value]]] = field(default_factory=dict)
    ticks: list[tuple[str, Inflight]] = field(default_factory=list)

    def add(self, stream: str, first: int, values: list[Value]) -> None:
        entry = self.values.get(stream)
        if entry is None:
            self.values[stream] = (first, list(values))
        else:
            entry[1].extend(values)

    def clear(self) -> None:
        self.values.clear()
        self.ticks.clear()

    def trim(self, lows: dict[str, int]) -> None:
        """Let go of the messages below each stream's low-water mark (``lows``): released
        before any commit wrote them, no commit will. Between commits spaced far apart
        (large frames) the journal would otherwise hold every value of the window, and
        with them their shared-memory slots."""
        for stream, (first, values) in list(self.values.items()):
            cut = lows.get(stream, first) - first
            if cut >= len(values):
                del self.values[stream]
            elif cut > 0:
                self.values[stream] = (first + cut, values[cut:])

    def __bool__(self) -> bool:
        return bool(self.values or self.ticks)


def implied_starts(previous: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The ``starts`` of a tick that takes the next message of each input after a tick
    whose ``starts`` were ``previous``: what a tick with no row in the store was."""
    return [(first + skip + count, 0, 1) for first, skip, count in previous]


@dataclass
class Instance:
    """One worker instance of a replicated vertex (``replicas`` > 1): the ticks sent to it
    and not answered, in the order sent (it answers them in that order)."""

    epoch: int
    name: str  # the worker's instance id: a Hello with the same id is a restart of it
    pid: int
    host: str
    last_seen: float
    ready: bool = False
    closed: bool = False  # told to stop: the vertex finished
    assigned: deque[int] = field(default_factory=deque)
    inflight_bytes: int = 0
    ticks: int = 0  # results it delivered
    config_version: int = 0
    pace: Pace = field(default_factory=Pace)  # its time per tick
