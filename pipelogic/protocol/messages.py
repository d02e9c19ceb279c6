"""The message classes, their wire names and their field checks (see the package docstring)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, dataclass_transform

from pipelogic.protocol.status import BrokerInfo, RunSettings, StreamStatus, VertexStatus, WorkerStats

__all__ = [
    "MAX_FRAMES",
    "MAX_HEADER_BYTES",
    "ONE_INSTANCE",
    "PROTOCOL_VERSION",
    "RETRY_LATER",
    "Applied",
    "Checkpoint",
    "Close",
    "ConfigApplied",
    "ConfigPush",
    "ConfigReply",
    "ConfigSet",
    "Failed",
    "Finished",
    "Goodbye",
    "Heartbeat",
    "Hello",
    "Message",
    "Pong",
    "Ready",
    "Refuse",
    "Results",
    "StatusReply",
    "StatusRequest",
    "Sync",
    "Tap",
    "TapReply",
    "Ticks",
    "Welcome",
]

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 4 * 1024 * 1024
"""A header larger than this is refused (payload frames are limited by the transport)."""
MAX_FRAMES = 1_000_000
"""A message with more frames than this is refused."""
RETRY_LATER = "retry_later"
"""``Refuse.code`` when the same request may succeed a little later (a worker says Hello
again after a pause instead of giving up)."""
ONE_INSTANCE = "one_instance"
"""``Refuse.code`` when a worker that asked to join (``Hello.join``: its state directory is
locked by another worker) found a vertex that runs as one instance."""

_TYPES: dict[str, tuple[type, ...]] = {
    # The dictionaries of .status are maps on the wire (their keys are the readers' to check).
    "VertexStatus": (dict,),
    "StreamStatus": (dict,),
    "BrokerInfo": (dict,),
    "WorkerStats": (dict,),
    "RunSettings": (dict,),
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (float, int),
    "dict": (dict,),
    "list": (list,),
    "Any": (object,),
}


class Message:
    """Base of every message: a frozen dataclass with a ``KIND``."""

    KIND: ClassVar[str] = ""
    HAS_PAYLOAD: ClassVar[bool] = False
    _SCHEMA: ClassVar[dict[str, tuple[tuple[type, ...], bool, bool]]]  # types, nullable, required
    _FAST: ClassVar[Callable[[dict[Any, Any]], Any]]  # the body as a message, or None: see decode_header


_MISSING = object()


def _compile_body_check(cls: type, kind: str, schema: dict[str, tuple[tuple[type, ...], bool, bool]]) -> Any:
    """Generate ``fast(body) -> message | None`` for one message class: the same checks
    as the generic loop in :func:`decode_header`, unrolled per field (exact types, as
    msgpack produces them), returning None at the first mismatch so that the generic loop
    can say what is wrong. The generic loop costs about 5 us per message; this, 1."""
    ns: dict[str, Any] = {"_M": _MISSING, "_cls": cls}
    lines = ["def fast(body):", "    get = body.get", "    missing = 0"]
    args = []
    for i, (name, (types, nullable, required)) in enumerate(schema.items()):
        v = f"v{i}"
        args.append(v)
        lines.append(f"    {v} = get({name!r}, _M)")
        if required:
            lines.append(f"    if {v} is _M: return None")
        else:
            default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
            ns[f"_d{i}"] = default
            lines.append(f"    if {v} is _M:")
            lines.append(f"        {v} = _d{i}")
            lines.append("        missing += 1")
        if types == (object,):
            continue
        for k, t in enumerate(types):
            ns[f"_t{i}_{k}"] = t
        wrong = " and ".join(f"type({v}) is not _t{i}_{k}" for k in range(len(types)))
        cond = (f"{v} is not None and " if nullable else "") + wrong
        lines.append(f"    {'if' if required else 'elif'} {cond}: return None")  # elif: a default is not checked
    lines.append(f"    if len(body) + missing != {len(schema)}: return None")
    lines.append(f"    return _cls({', '.join(args)})")
    exec("\n".join(lines), ns)  # generated from the class's own annotations
    return ns["fast"]


_REGISTRY: dict[str, type[Message]] = {}


_M = TypeVar("_M", bound="type[Message]")


@dataclass_transform(frozen_default=True)
def _message(kind: str, payload: bool = False) -> Callable[[_M], _M]:
    """Make a class a frozen, slotted message dataclass registered under ``kind``, with a
    field schema for the strict decoder (read from the annotations)."""

    def wrap(cls: _M) -> _M:
        cls = dataclasses.dataclass(frozen=True, slots=True)(cls)  # type: ignore[assignment]
        cls.KIND = kind
        cls.HAS_PAYLOAD = payload
        schema = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            ann = str(f.type)
            nullable = "None" in ann
            base = ann.split("|")[0].strip().split("[")[0]
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            schema[f.name] = (_TYPES[base], nullable, required)
        cls._SCHEMA = schema
        cls._FAST = _compile_body_check(cls, kind, schema)
        _REGISTRY[kind] = cls
        return cls

    return wrap


# --- control: client -> broker -------------------------------------------------------


@_message("hello")
class Hello(Message):
    """A worker introduces itself. ``features`` lists its modes (stateful, streaming,
    virtual_input, virtual_output); ``resume`` is reserved for snapshot offsets; ``host``
    is the worker's host name (a container's id), which tells a restart of the same
    worker from a second instance of the vertex elsewhere; ``types`` are the stream types
    its component.yml declares, which the broker checks against the vertex's.

    ``instance`` names this worker instance (``PIPELOGIC_INSTANCE``, else host and pid): of
    a replicated vertex, a Hello with a live instance's id is a restart of that instance,
    any other one more instance. ``join``: the worker could not lock its vertex's state
    directory (another worker holds it): admit it only as one more instance of a replicated
    vertex, never as a restart that fences the holder. ``shm``: the name of a probe file the
    worker created in its shared-memory directory; a broker that finds it in its own
    offers the shared-memory path in the Welcome (``settings.shm``). ``groups``: the worker
    process's groups, sent with ``shm``; the broker gives it descriptors of a producer's
    group-readable pool only if that group is among them (the kernel checks the claim: a
    worker that claims a group it is not in cannot open the slot)."""

    vertex: str
    instance: str
    pid: int
    features: list[Any]
    inputs: int
    outputs: int
    resume: dict[str, Any] | None = None
    host: str = ""
    types: list[Any] | None = None  # [[input type, ...], [output type, ...]] as component.yml declares them
    join: bool = False
    shm: str = ""
    groups: list[Any] | None = None


@_message("welcome")
class Welcome(Message):
    """The broker accepts a worker: where to connect, the wire types of its inputs (the
    producers' types), the resolved output types, config values and settings.
    ``tick_identity`` is a random secret: the broker's tick socket (a ROUTER) addresses
    ticks to the peer with that routing id only, so no other peer that connects to the
    tick port receives a tick."""

    epoch: int
    tick_endpoint: str
    result_endpoint: str
    input_types: list[str]
    output_types: list[str]
    config: dict[str, Any]
    config_version: int
    heartbeat_ms: int
    settings: RunSettings
    tick_identity: str = ""  # hex: the routing id the worker's tick socket must take


@_message("refuse")
class Refuse(Message):
    """The broker refuses a request (a Hello: unknown vertex, mismatched component,
    duplicate; a control request). ``reason`` is for people; ``code`` (``RETRY_LATER``,
    ``ONE_INSTANCE`` or empty) is for the program that asked."""

    reason: str
    code: str = ""


@_message("status_request")
class StatusRequest(Message):
    detail: bool = False


@_message("status_reply")
class StatusReply(Message):
    """The run's state. ``broker`` describes the broker process: ``pid``, ``instance``,
    ``start`` (how many times a broker started on this run's store), ``store`` (its path,
    or None in memory), ``commits``, ``store_error`` (why commits fail, while they do)."""

    pipeline: str
    state: str
    vertices: list[VertexStatus]
    streams: list[StreamStatus]
    error: str | None = None
    broker: BrokerInfo | None = None


@_message("tap")
class Tap(Message):
    """Operator -> broker: the values of output ``stream`` of ``vertex`` from ``cursor`` on
    (-1: from now), at most ``limit``. Polled: the broker keeps a bounded ring for a tapped
    stream while polls keep coming, and never holds up the pipeline for a tap.
    ``newest``: only the newest ``limit`` of them (a viewer that shows the latest value of
    a fast stream); the ones before are skipped, not counted as ``dropped``."""

    vertex: str
    stream: int
    cursor: int
    limit: int
    newest: bool = False


@_message("tap_reply", payload=True)
class TapReply(Message):
    """The tapped values as payload (each a value frame and its buffer frames; ``layout``
    gives the buffer-frame count of each); ``first`` is the first one's number in the
    stream, ``dropped`` how many before it the tap missed (it polled too slowly),
    ``next`` the cursor of the next poll, ``ended`` whether the stream is over and all
    of it was delivered; ``type`` is the stream's type."""

    type: str
    first: int
    layout: list[Any]
    dropped: int
    next: int
    ended: bool


@_message("config_set")
class ConfigSet(Message):
    """Set config values of a vertex; ``values`` maps keys to pipelang literal text."""

    vertex: str
    values: dict[str, Any]
    wait_ms: int = 5000


@_message("config_reply")
class ConfigReply(Message):
    ok: bool
    version: int
    applied: bool
    error: str | None = None


# --- data: broker -> worker -------------------------------------------------------------


@_message("ticks", payload=True)
class Ticks(Message):
    """A batch of ticks. ``layout[i] = [tick, [[nbufs per value] per input], virtual]`` where
    ``virtual`` is ``[skip, min, max]`` for the worker's virtual queue, or None."""

    epoch: int
    layout: list[Any]


@_message("config_push")
class ConfigPush(Message):
    version: int
    values: dict[str, Any]


@_message("close")
class Close(Message):
    reason: str


@_message("applied")
class Applied(Message):
    """Answer to :class:`Sync`: the broker has applied the results of every tick below
    ``tick`` (so a snapshot covering them may be written)."""

    epoch: int
    tick: int


@_message("pong")
class Pong(Message):
    """Answer to a Heartbeat sent on the control socket: ``alive`` is False when the
    epoch was fenced (the worker was replaced or declared dead). ``broker`` names the
    broker process: another one than in the worker's Welcome means the broker restarted,
    and the worker rejoins it instead of stopping."""

    epoch: int
    alive: bool
    broker: str = ""


# --- data: worker -> broker -------------------------------------------------------------


@_message("ready")
class Ready(Message):
    """``run()`` was called: the worker's modes and its first pull request (streaming).
    ``resume`` (stateful workers) is the tick its restored state reaches: the state reflects
    every tick below it, so the broker replays from there. The broker sends ticks only
    after this."""

    epoch: int
    features: list[Any]
    pull_request: list[Any] | None = None
    resume: int | None = None


@_message("results", payload=True)
class Results(Message):
    """Results of ticks, in tick order. ``layout[i] = [tick, [[nbufs per value] per output],
    pull_request or None]``. ``stats``: the worker's counters when they changed (so the
    broker has them at the end without waiting for a heartbeat)."""

    epoch: int
    layout: list[Any]
    stats: WorkerStats | None = None


@_message("heartbeat")
class Heartbeat(Message):
    epoch: int
    stats: WorkerStats


@_message("config_applied")
class ConfigApplied(Message):
    epoch: int
    version: int


@_message("failed")
class Failed(Message):
    """The worker function (or the runtime) failed on ``tick``; ``error`` is the message,
    ``traceback`` the formatted traceback."""

    epoch: int
    tick: int
    error: str
    traceback: str
    fatal: bool = True
    inputs: list[Any] | None = None


@_message("finished")
class Finished(Message):
    """A source worker has produced its last tick (its virtual input is closed and empty)."""

    epoch: int


@_message("sync")
class Sync(Message):
    """The worker is about to snapshot a state that reflects every tick below ``tick``;
    the broker answers with :class:`Applied` once it has applied their results."""

    epoch: int
    tick: int


@_message("checkpoint")
class Checkpoint(Message):
    """A snapshot reflecting every tick below ``tick`` is durable: the broker may release
    what only older snapshots needed."""

    epoch: int
    tick: int


@_message("goodbye")
class Goodbye(Message):
    epoch: int
