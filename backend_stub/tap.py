"""Taps: operators watching an output stream (``pipelogic tap``) without touching it.

A tapped stream gets a ring of its newest values (references to the frames the consumers
get anyway: nothing is copied or decoded). The ring is bounded in messages and bytes and
trimmed as polls take values, so a slow tap loses the oldest values (counted, and told
to it) and never slows the pipeline; a tap that stops polling is forgotten. With no tap,
the cost on the hot path is one empty-dict check per emitted batch. A tap that asks for
the newest values only (the web view's) keeps a ring of NEWEST_KEEP, so a fast stream
costs it a few deque operations per batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backend_stub.model import Value
from backend_stub.vertices import VertexState
from pipelogic import protocol as P

__all__ = ["Taps"]

MAX_VALUES = 4096
MAX_BYTES = 64 * 1024 * 1024
REPLY_BYTES = 16 * 1024 * 1024  # per poll; the rest waits for the next one
IDLE_S = 10.0


NEWEST_KEEP = 64  # what a ring polled for its newest values keeps (the rest it never needs)


def _size(value: Value) -> int:
    return sum(map(len, value))


@dataclass
class _Ring:
    values: deque[tuple[int, Value]] = field(default_factory=deque)
    nbytes: int = 0
    last_poll: float = 0.0
    dropped: int = 0  # values evicted before any poll took them
    keep: int = MAX_VALUES  # NEWEST_KEEP once polled for its newest values: cheaper per value


class Taps:
    def __init__(self) -> None:
        self.rings: dict[tuple[str, int], _Ring] = {}

    def offer(self, vertex: str, stream: int, first: int, values: list[Value]) -> None:
        ring = self.rings.get((vertex, stream))
        if ring is None:
            return
        skip = max(0, len(values) - ring.keep)  # of a large batch, only what the ring would keep
        for i in range(skip, len(values)):
            v = values[i]
            ring.values.append((first + i, v))
            ring.nbytes += _size(v)
        while ring.values and (len(ring.values) > ring.keep or ring.nbytes > MAX_BYTES):
            _, old = ring.values.popleft()
            ring.nbytes -= _size(old)

    def expire(self, now: float) -> None:
        for key in [k for k, r in self.rings.items() if now - r.last_poll > IDLE_S]:
            del self.rings[key]

    def poll(self, vertices: Mapping[str, VertexState], msg: P.Tap, now: float) -> tuple[P.Message, list[Any]]:
        """Answer a tap request on one of ``vertices``' output streams."""
        vs = vertices.get(msg.vertex)
        if vs is None or not vs.v.outputs:
            with_outputs = ", ".join(n for n, x in vertices.items() if x.v.outputs)
            what = "unknown vertex" if vs is None else "no output streams on vertex"
            return P.Refuse(f"{what} {msg.vertex!r}; vertices with outputs: {with_outputs}"), []
        if not 0 <= msg.stream < len(vs.v.outputs):
            return P.Refuse(f"vertex {msg.vertex} has {len(vs.v.outputs)} output stream(s), no stream {msg.stream}"), []
        key = (msg.vertex, msg.stream)
        produced = vs.out_counts[msg.stream]
        type_text = str(vs.v.output_types[msg.stream])
        ring = self.rings.get(key)
        if ring is None or msg.cursor < 0:
            self.rings[key] = _Ring(last_poll=now)
            return P.TapReply(type_text, produced, [], 0, produced, vs.finished), []
        ring.last_poll = now
        cursor = msg.cursor
        if msg.newest:  # skip to the newest `limit`: skipped, not lost to the tap
            ring.keep = max(NEWEST_KEEP, min(MAX_VALUES, msg.limit))
            if ring.values:
                cursor = max(cursor, ring.values[-1][0] + 1 - max(1, msg.limit))
        while ring.values and ring.values[0][0] < cursor:  # delivered by the last poll (or skipped)
            _, old = ring.values.popleft()
            ring.nbytes -= _size(old)
        start = ring.values[0][0] if ring.values else produced
        dropped = max(0, start - cursor)
        cursor = max(cursor, start)
        layout: list[Any] = []
        payload: list[Any] = []
        size = 0
        for _, v in ring.values:
            if len(layout) >= max(1, msg.limit) or (layout and size + _size(v) > REPLY_BYTES):
                break  # (values before the cursor were trimmed above)
            layout.append(len(v) - 1)
            payload.extend(v)
            size += _size(v)
        nxt = cursor + len(layout)
        return P.TapReply(type_text, cursor, layout, dropped, nxt, vs.finished and nxt >= produced), payload
