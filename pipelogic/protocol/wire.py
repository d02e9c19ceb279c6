"""Messages to frames and back: encoding, the strict decoder, payload slicing by layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from pipelogic.errors import ProtocolError, ProtocolVersionError, WrongDirection
from pipelogic.protocol.messages import (
    _REGISTRY,
    MAX_FRAMES,
    MAX_HEADER_BYTES,
    PROTOCOL_VERSION,
    Message,
    Results,
    Ticks,
)
from pipelogic.protocol.status import WorkerStats
from pipelogic.types._pack import pack

__all__ = [
    "DIRECTIONS",
    "REPLY",
    "REQUEST",
    "TO_BROKER",
    "TO_WORKER",
    "decode",
    "decode_header",
    "encode",
    "encode_results",
    "encode_ticks",
    "split_values",
]


def encode(msg: Message, payload: Sequence[Any] = ()) -> list[Any]:
    """The frames of ``msg`` followed by its payload frames."""
    return _frames(msg.KIND, {name: getattr(msg, name) for name in msg._SCHEMA}, payload)


def _frames(kind: str, body: dict[str, Any], payload: Sequence[Any]) -> list[Any]:
    return [pack([PROTOCOL_VERSION, kind, body]), *payload]


def encode_ticks(epoch: int, layout: list[Any], payload: Sequence[Any]) -> list[Any]:
    """``encode(Ticks(epoch, layout), payload)`` without building the message object: the
    broker sends one per tick at ``batch: 1``."""
    return _frames(Ticks.KIND, {"epoch": epoch, "layout": layout}, payload)


def encode_results(epoch: int, layout: list[Any], stats: WorkerStats | None, payload: Sequence[Any]) -> list[Any]:
    """``encode(Results(epoch, layout, stats), payload)`` without building the message
    object: a worker sends one per tick at ``credit: 1``."""
    return _frames(Results.KIND, {"epoch": epoch, "layout": layout, "stats": stats}, payload)


def decode_header(frame: Any) -> Message:
    """Decode and check a header frame."""
    try:
        size = len(frame)
    except TypeError:
        raise ProtocolError(f"header frame is not bytes ({type(frame).__name__})") from None
    if size > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {size} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        data = msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # noqa: BLE001 - totality: msgpack raises many types
        raise ProtocolError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if type(data) is not list or len(data) != 3:
        raise ProtocolError(f"header must be [version, kind, body], got {_short(data)}")
    version, kind, body = data
    if type(version) is not int or version != PROTOCOL_VERSION:  # True and 1.0 equal 1 in Python
        raise ProtocolVersionError(
            f"protocol version {version!r} is not supported (this side speaks "
            f"{PROTOCOL_VERSION}); upgrade the older side"
        )
    cls = _REGISTRY.get(kind) if type(kind) is str else None
    if cls is None:
        raise ProtocolError(f"unknown message kind {_short(kind)}")
    if type(body) is not dict:
        raise ProtocolError(f"{kind}: body must be a map, got {type(body).__name__}")
    msg: Message | None = cls._FAST(body)
    if msg is not None:
        return msg
    kwargs: dict[str, Any] = {}
    for name, (types, nullable, required) in cls._SCHEMA.items():
        if name not in body:
            if required:
                raise ProtocolError(f"{kind}: missing field {name!r}")
            continue
        v = body[name]
        if v is None and nullable:
            kwargs[name] = v
            continue
        if not isinstance(v, types) or (types == (int,) and type(v) is bool):
            raise ProtocolError(
                f"{kind}.{name}: expected {'/'.join(t.__name__ for t in types)}, got {type(v).__name__} ({_short(v)})"
            )
        kwargs[name] = v
    extra = set(body) - set(cls._SCHEMA)
    if extra:
        raise ProtocolError(f"{kind}: unexpected field(s) {', '.join(sorted(map(str, extra)))}")
    return cls(**kwargs)


# The directions a message travels in, each on its own sockets (docs/protocol.md). A receiver
# decodes with the direction it expects: a message of another direction is a ProtocolError,
# however well formed. (A heartbeat goes both on the control socket, from the worker's
# heartbeat thread, and on the data socket, with the final counters.)
REQUEST = "control request"  # client -> broker, control socket
REPLY = "control reply"  # broker -> client, control socket
TO_WORKER = "broker to worker"  # a worker's tick socket
TO_BROKER = "worker to broker"  # the broker's result socket
DIRECTIONS: dict[str, frozenset[str]] = {
    REQUEST: frozenset({"hello", "status_request", "tap", "config_set", "heartbeat"}),
    REPLY: frozenset({"welcome", "refuse", "status_reply", "tap_reply", "config_reply", "pong"}),
    TO_WORKER: frozenset({"ticks", "config_push", "close", "applied"}),
    TO_BROKER: frozenset(
        {"ready", "results", "heartbeat", "config_applied", "failed", "finished", "sync", "checkpoint", "goodbye"}
    ),
}


def decode(frames: Sequence[Any], expect: str | None = None) -> tuple[Message, list[Any]]:
    """Decode a whole message: returns the message and its payload frames (unchecked
    against the layout; see :func:`split_values`). ``expect``: the direction the receiver
    takes messages in (``REQUEST``, ``REPLY``, ``TO_WORKER``, ``TO_BROKER``); a message of
    another one is refused."""
    if not frames:
        raise ProtocolError("empty message")
    if len(frames) > MAX_FRAMES:
        raise ProtocolError(f"{len(frames)} frames exceed {MAX_FRAMES}")
    head = frames[0]
    msg = decode_header(getattr(head, "buffer", head))
    if expect is not None and msg.KIND not in DIRECTIONS[expect]:
        raise WrongDirection(f"{msg.KIND} is not a {expect} message")
    payload = list(frames[1:])
    if payload and not msg.HAS_PAYLOAD:
        raise ProtocolError(f"{msg.KIND}: unexpected {len(payload)} payload frame(s)")
    return msg, payload


def split_values(
    layout: Any, payload: Sequence[Any], streams: int
) -> list[tuple[int, list[list[tuple[Any, ...]]], Any]]:
    """Slice a Ticks/Results payload by its layout.

    Returns ``[(tick, [[value, ...] per stream], extra)]`` where each value is a tuple
    ``(frame, *buffer_frames)``. Raises ProtocolError if the layout is malformed, names
    another number of streams, or does not account for every payload frame exactly.
    """
    if type(layout) is not list:
        raise ProtocolError("layout must be a list")
    out = []
    pos = 0
    n = len(payload)
    for entry in layout:
        if type(entry) is not list or len(entry) != 3:
            raise ProtocolError(f"layout entry must be [tick, streams, extra], got {_short(entry)}")
        tick, per_stream, extra = entry
        if type(tick) is not int or tick < 0:
            raise ProtocolError(f"layout tick must be a non-negative int, got {_short(tick)}")
        if type(per_stream) is not list or len(per_stream) != streams:
            raise ProtocolError(
                f"tick {tick}: layout names {len(per_stream) if type(per_stream) is list else '?'} "
                f"stream(s), expected {streams}"
            )
        streams_out = []
        for counts in per_stream:
            if type(counts) is not list:
                raise ProtocolError(f"tick {tick}: per-stream layout must be a list")
            values = []
            for nb in counts:
                if type(nb) is not int or nb < 0:
                    raise ProtocolError(f"tick {tick}: bad buffer count {_short(nb)}")
                end = pos + 1 + nb
                if end > n:
                    raise ProtocolError(f"tick {tick}: layout needs more frames than the {n} sent")
                values.append(tuple(payload[pos:end]))
                pos = end
            streams_out.append(values)
        out.append((tick, streams_out, extra))
    if pos != n:
        raise ProtocolError(f"layout accounts for {pos} of {n} payload frames")
    return out


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."
