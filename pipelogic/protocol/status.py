"""The shapes of the dictionaries messages carry: a run's status, a worker's counters, the
settings a Welcome gives. On the wire they are plain msgpack maps (``pipelogic status
--json`` prints them as they are); here they are ``TypedDict``s, so every reader's key
lookups are checked by mypy at no cost per message.

Keys a newer broker adds are passed through untouched; a reader of a key an older broker
may lack (the ``NotRequired`` ones) must say what it does without it.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

__all__ = [
    "LOSS_KINDS",
    "BrokerInfo",
    "InstanceStatus",
    "RunSettings",
    "StreamStatus",
    "Histogram",
    "VertexStatus",
    "WorkerStats",
    "losses",
]

LOSS_KINDS = {
    "virtual_dropped": "virtual input(s) dropped by a full virtual queue",
    "dropped_at_end": "message(s) left at the end of a stream, fewer than the pull request's min_pull",
    "dead_lettered": "tick(s) skipped on error (on_error: skip), inputs in the dead-letter file",
    "virtual_out_lost": "virtual output item(s) not delivered or acknowledged by the end (drain timeout)",
    "nothing_dropped": "Nothing value(s) dropped by a Maybe unpack adapter (a Maybe<t> producer, a t input)",
}
"""The :class:`VertexStatus` counters that count values lost (the non-zero ones are also
in ``lost``), each with what it means to a user."""


class Histogram(TypedDict):
    """Durations in seconds (a worker's ticks as the broker timed them while it had work;
    a sink's sampled end-to-end latency): cumulative counts per upper bound ``le``, the
    last count being all of them, and their sum."""

    le: list[float]
    counts: list[int]
    sum: float


class InstanceStatus(TypedDict):
    """One instance of a replicated vertex."""

    instance: str
    epoch: int
    pid: int | None
    host: str | None
    state: str  # connected, running or closed
    inflight: int
    ticks: int
    tick_seconds: NotRequired[Histogram]


class VertexStatus(TypedDict):
    """One vertex of a run, as ``pipelogic status`` shows it."""

    name: str
    kind: str  # "component", or "source:NAME" / "sink:NAME" for a built-in
    state: str  # waiting, connected, running, finished, failed (Scheduler's VertexState.state)
    ticks: int
    inflight: int
    applied: int
    retained: int
    duplicates: int
    replayed: int
    checkpoint: int | None
    queues: list[int]
    max_queues: list[int]
    restarts: int
    errors: int
    pid: int | None
    host: str | None
    epoch: int
    virtual_dropped: int
    virtual_out_lost: int
    nothing_dropped: int
    virtual_queued: int
    config_version: int
    dropped_at_end: int
    dead_lettered: int
    # A built-in sink that cannot write: what and why.
    blocked: NotRequired[str]
    # A replicated vertex.
    replicas: NotRequired[int]
    lost_pids: NotRequired[list[int]]
    instances: NotRequired[list[InstanceStatus]]
    # Payload bytes pushed into each input so far, and held there now.
    input_bytes: NotRequired[list[int]]
    queue_bytes: NotRequired[list[int]]
    tick_seconds: NotRequired[Histogram]  # a component's
    latency_seconds: NotRequired[Histogram]  # a sink's: from a source's message to its write, sampled
    # Added by the broker's observer on every status request.
    rate: NotRequired[float | None]  # ticks per second over the last seconds (a finished one: while it moved)
    stuck_s: NotRequired[float]  # how long it has had work and made no progress (0: not stuck)
    stuck_pids: NotRequired[list[int]]  # of a stuck replicated vertex: the instances holding ticks
    lost: NotRequired[dict[str, int]]  # the non-zero LOSS_KINDS counters
    snapshot_age_s: NotRequired[float | None]


# "from" is a keyword: the functional form.
StreamStatus = TypedDict("StreamStatus", {"from": str, "to": list[str], "count": int})
"""One stream: ``from`` ``VERTEX.OUTPUT``, ``to`` the inputs it feeds, ``count`` values so far."""


class BrokerInfo(TypedDict):
    """The broker process behind a status reply."""

    pid: int
    instance: str
    start: int  # how many times a broker started on this run's store
    store: str | None  # the recovery store's folder, None in memory
    commits: int
    store_error: str | None  # why commits fail, while they do
    refused: dict[str, int]  # refused messages by where they came from
    shm: dict[str, Any] | None  # the shared-memory pools' counters, None when off


class WorkerStats(TypedDict, total=False):
    """The counters a worker reports in heartbeats and results (the broker keeps only
    these keys, well-formed: ``backend_stub.admission.clean_stats``)."""

    ticks: int
    virtual_dropped: int
    virtual_queued: int
    virtual_out_lost: int
    nothing_dropped: int
    virtual_closed: bool


class RunSettings(TypedDict, total=False):
    """What a Welcome's ``settings`` tell a worker to run by. A worker reads each with a
    default, so a broker that leaves one out still gets a working worker."""

    on_error: str  # "fail" or "skip"
    credit: int
    run: str
    broker: str  # this broker's instance id: a Pong from another one means it restarted
    liveness: int
    applied: int  # the newest tick whose results the broker holds
    snapshot: Any  # the snapshot policy (component.yml's, else the pipeline's)
    shm: Any  # the shared-memory offer, when the broker found the worker's probe
    virtual_queue: dict[str, Any]  # the vertex's virtual_queue: (size, bytes, keep) in pipeline.yml


def losses(v: VertexStatus) -> dict[str, int]:
    """The non-zero :data:`LOSS_KINDS` counters of ``v`` (a missing one counts 0)."""
    counts = {
        "virtual_dropped": v.get("virtual_dropped", 0),
        "dropped_at_end": v.get("dropped_at_end", 0),
        "dead_lettered": v.get("dead_lettered", 0),
        "virtual_out_lost": v.get("virtual_out_lost", 0),
        "nothing_dropped": v.get("nothing_dropped", 0),
    }
    return {k: n for k, n in counts.items() if n}
