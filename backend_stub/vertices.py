"""The state of each vertex in the broker, one class per kind: a built-in
:class:`SourceVertex` or :class:`SinkVertex` (the broker runs it), a :class:`WorkerVertex`
(one worker process) or a :class:`ReplicatedVertex` (several instances), the last two over
:class:`ComponentVertex` (a component's log of formed ticks, what was applied, its
counters). :func:`vertex_state` makes the right one for a pipeline's vertex. What a vertex
retains and what state it is in are here; what moves it is in :mod:`backend_stub.scheduler`."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from backend_stub.builtins import Sink, Source, make_sink, make_source
from backend_stub.model import Inflight, InputBuffer, Instance, Settings
from backend_stub.pacing import Histogram, Pace
from pipelogic import protocol as P
from pipelogic.pipeline import Pipeline, Vertex
from pipelogic.types import InputsPullRequest

__all__ = [
    "ComponentVertex",
    "ReplicatedVertex",
    "Served",
    "SinkVertex",
    "SourceVertex",
    "VertexState",
    "WorkerVertex",
    "vertex_state",
]


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
    settings: Settings = field(default_factory=Settings, kw_only=True)  # the pipeline's, with its own
    next_mark: float = 0.0  # a source: when it marks its next message (backend_stub.latency)
    # When ``ticks`` first moved under this broker (and its value just after), and when it
    # last moved: a finished vertex's mean rate, exact where the observer's samples are
    # half a second apart (see :meth:`moved`).
    first_moved: tuple[float, int] | None = None
    last_moved: float = 0.0
    # Whether the recovery store keeps this vertex's messages until their consumers are
    # done with them (a built-in source's are made again instead).
    JOURNALED: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.stream_names = [f"{self.v.name}.{k}" for k in range(len(self.consumers))]

    @property
    def name(self) -> str:
        return self.v.name

    def moved(self, now: float) -> None:
        """``ticks`` changed at ``now`` (the loop turn's time)."""
        if self.first_moved is None:
            self.first_moved = (now, self.ticks)
        self.last_moved = now

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
    latency: Histogram = field(default_factory=Histogram)  # sampled, from a source to the write


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
    pace: Pace = field(default_factory=Pace)  # its time per tick (of all instances together)

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


def vertex_state(pipeline: Pipeline, name: str, fresh: bool, settings: Settings) -> VertexState:
    """The state of vertex ``name``, of the class for its kind (a fresh run's sinks start
    empty), running by ``settings`` with the vertex's own."""
    v = pipeline.vertices[name]
    own = settings.for_vertex(v)
    inputs = [InputBuffer() for _ in v.inputs]
    consumers = [[(p.vertex, p.index) for p in outs] for outs in v.outputs]
    out_counts = [0] * len(v.outputs)
    if v.kind == "source":
        return SourceVertex(v, inputs, consumers, out_counts, source=make_source(pipeline, v), settings=own)
    if v.kind == "sink":
        sink = make_sink(pipeline, v)
        if fresh:
            sink.resume(0, 0)
        return SinkVertex(v, inputs, consumers, out_counts, sink=sink, settings=own)
    if v.replicas > 1:
        return ReplicatedVertex(v, inputs, consumers, out_counts, settings=own)
    return WorkerVertex(v, inputs, consumers, out_counts, settings=own)
