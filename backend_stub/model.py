"""The broker's data model: settings, actions, input buffers, logged ticks and the state of
each vertex. Plain data with the few rules that belong to it (what a vertex retains, what
state it is in); the logic that moves it is in :mod:`backend_stub.scheduler`, what survives
a broker restart in :mod:`backend_stub.recovery`."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from backend_stub.builtins import Sink, Source
from pipelogic import protocol as P
from pipelogic.pipeline import Pipeline, Vertex
from pipelogic.types import InputsPullRequest

__all__ = ["Action", "Inflight", "InputBuffer", "Instance", "Journal", "Settings", "Value", "VertexState", "value_size"]

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
    """What changed since the recovery store's last commit: messages emitted on streams
    that have consumers (stream ``vertex.k``, number, frames) and ticks formed."""

    values: list[tuple[str, int, Value]] = field(default_factory=list)
    ticks: list[tuple[str, Inflight]] = field(default_factory=list)

    def clear(self) -> None:
        self.values.clear()
        self.ticks.clear()


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
    v: Vertex
    inputs: list[InputBuffer]
    consumers: list[list[tuple[str, int]]]
    source: Source | None = None
    sink: Sink | None = None
    epoch: int | None = None
    pid: int = 0
    host: str = ""
    ready: bool = False
    features: list[str] = field(default_factory=list)
    pull_request: InputsPullRequest | None = None
    log: deque[Inflight] = field(default_factory=deque)  # ticks log_base .. next_tick-1
    next_tick: int = 0  # the number of the next tick formed
    applied: int = 0  # ticks below this have had their results applied
    sent: int = 0  # the next tick to send to the current incarnation
    inflight_bytes: int = 0  # payload bytes of the ticks sent and not answered
    expect: int = 0  # the next tick whose result the current incarnation owes
    checkpoints: deque[int] = field(default_factory=lambda: deque(maxlen=2))
    closed_epoch: int | None = None  # the incarnation told to stop because we finished
    goodbye: bool = False  # the worker acknowledged the end (and wrote its final state)
    duplicates: int = 0  # results dropped because their tick was already applied
    replayed: int = 0  # ticks sent again to a new incarnation
    finished: bool = False
    failed: bool = False  # the run failed because of this vertex
    ticks: int = 0
    errors: int = 0
    restarts: int = 0
    connects: int = 0
    # Connects since this broker started (not stored): the first one after a broker start
    # is a rejoin or a resume the user asked for, not a restart of the worker.
    connects_here: int = 0
    last_seen: float = 0.0
    worker_stats: P.WorkerStats = field(default_factory=lambda: P.WorkerStats())
    out_counts: list[int] = field(default_factory=list)
    config_version: int = 0
    dropped_at_end: int = 0
    dead_lettered: int = 0  # ticks skipped (on_error: skip), their inputs in the dead-letter file
    # A replicated vertex (backend_stub.replicas): its live instances by epoch, ticks whose
    # instance died (sent again first, lowest first), results waiting for an earlier tick.
    instances: dict[int, Instance] = field(default_factory=dict)
    retry: list[int] = field(default_factory=list)  # a heap
    done: dict[int, Any] = field(default_factory=dict)  # tick -> per-output values (None: lost)
    done_bytes: int = 0
    lost_pids: deque[int] = field(default_factory=lambda: deque(maxlen=16))  # declared dead, maybe alive
    seen: set[str] = field(default_factory=set)  # instance ids that said Hello in this broker's life

    @property
    def name(self) -> str:
        return self.v.name

    @property
    def streaming(self) -> bool:
        return "streaming" in self.features

    @property
    def virtual_source(self) -> bool:
        return self.v.kind == "component" and not self.inputs

    @property
    def stateful(self) -> bool:
        return "stateful" in self.features

    @property
    def log_base(self) -> int:
        return self.log[0].tick if self.log else self.next_tick

    @property
    def replicated(self) -> bool:
        """Run as several worker instances (``replicas`` > 1), ticks spread over them."""
        return self.v.replicas > 1

    @property
    def outstanding(self) -> int:
        """Ticks sent to the current incarnation (every instance) and not answered yet."""
        if self.instances:
            return sum(len(i.assigned) for i in self.instances.values())
        return self.sent - self.expect

    def epochs(self) -> list[int]:
        """The live incarnations: the one worker, or every instance of a replicated vertex."""
        if self.replicated:
            return list(self.instances)
        return [self.epoch] if self.epoch is not None else []

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
            # A component's worker has not confirmed the end yet (a stateful one: written its
            # final state): "finished" would hide a final snapshot that fails.
            return "finished" if self.goodbye or self.v.kind != "component" else "finishing"
        if self.v.kind != "component":
            return "running"
        if self.replicated:
            if any(i.ready for i in self.instances.values()):
                return "running"
            return "connected" if self.instances else "waiting"
        if self.epoch is None:
            return "waiting"
        return "running" if self.ready else "connected"
