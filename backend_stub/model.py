"""The broker's data model: settings, actions, input buffers, logged ticks and the state of
each vertex, one class per kind (:class:`SourceVertex`, :class:`SinkVertex`,
:class:`WorkerVertex`, :class:`ReplicatedVertex`; :func:`vertex_state` makes the right one).
Plain data with the few rules that belong to it (what a vertex retains, what state it is
in); the logic that moves it is in :mod:`backend_stub.scheduler`, what survives a broker
restart in :mod:`backend_stub.recovery`."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from backend_stub.builtins import Sink, Source, make_sink, make_source
from pipelogic import protocol as P
from pipelogic.pipeline import Pipeline, Vertex
from pipelogic.types import InputsPullRequest

__all__ = [
    "Action",
    "ComponentVertex",
    "Inflight",
    "InputBuffer",
    "Instance",
    "Journal",
    "ReplicatedVertex",
    "Served",
    "Settings",
    "SinkVertex",
    "SourceVertex",
    "Value",
    "VertexState",
    "WorkerVertex",
    "implied_starts",
    "value_size",
    "vertex_state",
]

Value = tuple[Any, ...]


@dataclass
class Settings:
    buffer_capacity: int = 1024
    buffer_bytes: int = 64 * 1024 * 1024  # per input buffer, besides the message bound
    inflight_bytes: int = 64 * 1024 * 1024  # per worker, besides the credit in ticks
    credit: int = 256
    batch: int = 64
    heartbeat_ms: int = 1000
    liveness: int = 5
    redelivery: bool = True  # off: a control setting for tests; lost ticks are not replayed

    @classmethod
    def from_pipeline(cls, p: Pipeline, **overrides: Any) -> Settings:
        s = cls()
        for k, v in {**p.settings, **{k: v for k, v in overrides.items() if v is not None}}.items():
            if hasattr(s, k):
                setattr(s, k, bool(v) if k == "redelivery" else int(v))
        s.batch = max(1, min(s.batch, s.credit))
        return s


# What the socket loop must do, as the scheduler says it. ``durable`` (on each): the action
# acknowledges state (Applied, the end of a vertex, a stored config); a broker with a
# recovery store carries it out only once that state is committed, so no peer ever acts on
# something a broker restart would forget.


@dataclass(slots=True)
class Send:
    """Send ``frames`` to the worker incarnation ``epoch``."""

    epoch: int
    frames: list[Any]
    durable: bool = False
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


@dataclass
class VertexState:
    """What every vertex has, whatever serves it: its inputs, where its outputs go, how far
    it got. One class per kind below: a built-in :class:`SourceVertex` or
    :class:`SinkVertex` (the broker runs it), a :class:`WorkerVertex` (one worker process)
    or a :class:`ReplicatedVertex` (``replicas`` > 1: several instances)."""

    v: Vertex
    inputs: list[InputBuffer]
    consumers: list[list[tuple[str, int]]]
    out_counts: list[int] = field(default_factory=list)
    ticks: int = 0
    finished: bool = False
    # Whether the recovery store keeps this vertex's messages until their consumers are
    # done with them (a built-in source's are made again instead).
    JOURNALED: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.stream_names = [f"{self.v.name}.{k}" for k in range(len(self.consumers))]

    @property
    def name(self) -> str:
        return self.v.name

    @property
    def outstanding(self) -> int:
        """Ticks sent to a worker and not answered yet."""
        return 0

    @property
    def closed_for_good(self) -> bool:
        """Finished, and nothing more will come from it (a component's worker confirmed the end)."""
        return self.finished

    def epochs(self) -> list[int]:
        """The live worker incarnations serving it."""
        return []

    def state(self) -> str:
        return "finished" if self.finished else "running"


@dataclass
class SourceVertex(VertexState):
    """A built-in source: the broker makes its values (:class:`backend_stub.builtins.Source`)."""

    source: Source = field(kw_only=True)
    JOURNALED: ClassVar[bool] = False  # deterministic: a restarted broker makes its messages again


@dataclass
class SinkVertex(VertexState):
    """A built-in sink: the broker writes its values (:class:`backend_stub.builtins.Sink`)."""

    sink: Sink = field(kw_only=True)


@dataclass
class ComponentVertex(VertexState):
    """A component's vertex, served by worker processes: its log of formed ticks (exactly
    what each held, for a replay), what was applied, and the counters status shows."""

    failed: bool = False  # the run failed because of this vertex
    pid: int = 0  # of the worker (of a replicated vertex: the last instance that joined)
    host: str = ""
    ready: bool = False
    last_seen: float = 0.0
    features: list[str] = field(default_factory=list)
    pull_request: InputsPullRequest | None = None
    log: deque[Inflight] = field(default_factory=deque)  # ticks log_base .. next_tick-1
    next_tick: int = 0  # the number of the next tick formed
    applied: int = 0  # ticks below this have had their results applied
    sent: int = 0  # the next tick to send (a replay first: ticks below next_tick)
    checkpoints: deque[int] = field(default_factory=lambda: deque(maxlen=2))
    goodbye: bool = False  # the worker acknowledged the end (and wrote its final state)
    duplicates: int = 0  # results dropped because their tick was already applied
    replayed: int = 0  # ticks sent again to a new incarnation
    errors: int = 0
    restarts: int = 0
    connects: int = 0
    worker_stats: P.WorkerStats = field(default_factory=lambda: P.WorkerStats())
    config_version: int = 0
    dropped_at_end: int = 0
    dead_lettered: int = 0  # ticks skipped (on_error: skip), their inputs in the dead-letter file

    @property
    def streaming(self) -> bool:
        return "streaming" in self.features

    @property
    def virtual_source(self) -> bool:
        return not self.inputs

    @property
    def stateful(self) -> bool:
        return "stateful" in self.features

    @property
    def log_base(self) -> int:
        return self.log[0].tick if self.log else self.next_tick

    @property
    def closed_for_good(self) -> bool:
        return self.finished and self.goodbye

    def entry(self, tick: int) -> Inflight:
        return self.log[tick - self.log_base]

    def trim(self, redelivery: bool) -> None:
        """Drop logged ticks no incarnation can need again."""
        if self.stateful and redelivery and not self.virtual_source:
            if len(self.checkpoints) < 2:
                return  # the worker's previous snapshot is not known yet: keep everything
            keep = min(self.checkpoints[0], self.applied)
        else:
            keep = self.applied
        while self.log and self.log[0].tick < keep:
            self.log.popleft()

    def state(self) -> str:
        if self.failed:
            return "failed"
        if self.finished:
            # The worker has not confirmed the end yet (a stateful one: written its final
            # state): "finished" would hide a final snapshot that fails.
            return "finished" if self.goodbye else "finishing"
        return self.serving()

    def serving(self) -> str:
        """waiting, connected or running: how far its worker(s) got."""
        raise NotImplementedError


@dataclass
class WorkerVertex(ComponentVertex):
    """A component run as one worker process. Its current incarnation is ``epoch``; a new
    one fences it and gets the unanswered ticks (from its restored state, if stateful)."""

    epoch: int | None = None
    expect: int = 0  # the next tick whose result the current incarnation owes
    inflight_bytes: int = 0  # payload bytes of the ticks sent and not answered
    closed_epoch: int | None = None  # the incarnation told to stop because we finished
    # Connects since this broker started (not stored): the first one after a broker start
    # is a rejoin or a resume the user asked for, not a restart of the worker.
    connects_here: int = 0

    @property
    def outstanding(self) -> int:
        return self.sent - self.expect

    def epochs(self) -> list[int]:
        return [self.epoch] if self.epoch is not None else []

    def serving(self) -> str:
        if self.epoch is None:
            return "waiting"
        return "running" if self.ready else "connected"


@dataclass
class ReplicatedVertex(ComponentVertex):
    """A component run as several instances (``replicas`` > 1), ticks dealt over them
    (:mod:`backend_stub.replicas`): the live instances by epoch, ticks whose instance died
    (sent again first, lowest first), results waiting for an earlier tick."""

    instances: dict[int, Instance] = field(default_factory=dict)
    retry: list[int] = field(default_factory=list)  # a heap
    done: dict[int, Any] = field(default_factory=dict)  # tick -> per-output values (None: lost)
    done_bytes: int = 0
    lost_pids: deque[int] = field(default_factory=lambda: deque(maxlen=16))  # declared dead, maybe alive
    seen: set[str] = field(default_factory=set)  # instance ids that said Hello in this broker's life

    @property
    def outstanding(self) -> int:
        return sum(len(i.assigned) for i in self.instances.values())

    def epochs(self) -> list[int]:
        return list(self.instances)

    def serving(self) -> str:
        if any(i.ready for i in self.instances.values()):
            return "running"
        return "connected" if self.instances else "waiting"


Served = WorkerVertex | ReplicatedVertex
"""A vertex a worker (or several) serves: what ``Scheduler.by_epoch`` maps epochs to."""


def vertex_state(pipeline: Pipeline, name: str, fresh: bool) -> VertexState:
    """The state of vertex ``name``, of the class for its kind (a fresh run's sinks start empty)."""
    v = pipeline.vertices[name]
    inputs = [InputBuffer() for _ in v.inputs]
    consumers = [[(p.vertex, p.index) for p in outs] for outs in v.outputs]
    out_counts = [0] * len(v.outputs)
    if v.kind == "source":
        return SourceVertex(v, inputs, consumers, out_counts, source=make_source(pipeline, v))
    if v.kind == "sink":
        sink = make_sink(pipeline, v)
        if fresh:
            sink.resume(0, 0)
        return SinkVertex(v, inputs, consumers, out_counts, sink=sink)
    if v.replicas > 1:
        return ReplicatedVertex(v, inputs, consumers, out_counts)
    return WorkerVertex(v, inputs, consumers, out_counts)
