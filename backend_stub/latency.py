"""End-to-end latency, sampled: how long a message takes from a source to a sink.

Every :data:`TRACE_S` a source (a built-in one, or a component with no inputs: a camera)
marks the first message it emits with the time. The mark follows the message through the
broker at no cost to the others: an input buffer keeps the marks of the messages it holds
(``InputBuffer.traced``, by message number), a tick formed from a marked message carries
the earliest mark (``Inflight.born``), the tick's outputs are marked when its results are
applied, and a sink that writes a marked message observes ``now - born`` in its histogram
(``SinkVertex.latency``). Ticks and outputs that carry no mark cost one falsy check each.
A message that is dropped, skipped or produces no output ends its mark; so does a broker
restart (marks are not stored).
"""

from __future__ import annotations

from collections import deque

from backend_stub.model import InputBuffer
from backend_stub.pacing import Histogram

__all__ = ["TRACE_S", "born_in", "observe_written"]

TRACE_S = 0.1
"""How often each source marks a message (seconds)."""


def born_in(buf: InputBuffer, first: int, end: int) -> float:
    """The earliest mark of messages ``first .. end-1`` of ``buf``'s stream, taken off the
    buffer with any older ones (messages passed over); 0.0 if none is marked."""
    traced: deque[tuple[int, float]] = buf.traced
    born = 0.0
    while traced and traced[0][0] < end:
        index, t = traced.popleft()
        if index >= first and (not born or t < born):
            born = t
    return born


def observe_written(buf: InputBuffer, first: int, written: int, now: float, into: Histogram) -> None:
    """A sink wrote messages ``first .. first+written-1``: observe each marked one's age."""
    traced = buf.traced
    end = first + written
    while traced and traced[0][0] < end:
        index, t = traced.popleft()
        if index >= first:
            into.observe(now - t)
