"""Pacing by time: how much work waits for a worker whose ticks are slow.

Credit and buffer capacity are counts, sized for small messages: 256 ticks in flight keep a
fast worker busy across round trips. For a worker that takes 0.3 s a tick (a vision model),
the same counts (or the byte bounds, about 24 720p frames) only queue seconds of work in
front of each new value: results arrive seconds late at full throughput. So the broker
measures each worker's time per tick while it is busy, and lets at most about
:data:`TARGET_S` of that work wait: in flight at the worker and queued in each input
buffer of a synchronous vertex (never fewer than 1 of each). A fast worker's counts are
unchanged; a slow one gets 1 in flight and 1 queued, and the queue backs up to where the
values come from (a camera's ``virtual_in``, paced the same way in the worker).

Until a worker has been measured, the byte bounds in front of it are :data:`PROBE_BYTES`
(one value always goes, however large), so the first burst of frames does not queue either;
small messages are not held back, and a worker is measured by its first results.
A pure helper: :mod:`backend_stub.scheduler` feeds it results, :mod:`backend_stub.forming`
and :mod:`backend_stub.replicas` ask it for limits.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from pipelogic import protocol as P

__all__ = ["BUCKETS", "PROBE_BYTES", "TARGET_S", "Histogram", "Pace"]

TARGET_S = 0.05
"""About how much work (in the worker's own time) may wait in front of a new value."""

PROBE_BYTES = 1024 * 1024
"""The bytes in flight to a worker not measured yet, and queued in each of its inputs."""

_ALPHA = 0.3  # weight of the newest sample: a model that warms up is followed in a few ticks

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the histograms' buckets (the metrics' ``le``)."""


@dataclass(slots=True)
class Histogram:
    """Durations in seconds, counted per bucket of :data:`BUCKETS` (and past the last)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total_s: float = 0.0

    def observe(self, seconds: float, n: int = 1) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += n
        self.total_s += seconds * n

    def status(self) -> P.Histogram:
        """As the status carries it: ``le`` bounds, cumulative counts, their sum."""
        cumulative, c = [], 0
        for n in self.counts:
            c += n
            cumulative.append(c)
        return P.Histogram(le=list(BUCKETS), counts=cumulative, sum=round(self.total_s, 6))


@dataclass(slots=True)
class Pace:
    """One worker's (or one instance's, or a replicated vertex's) time per tick."""

    tick_s: float = 0.0  # seconds per tick while busy; 0: not measured yet
    busy_since: float = 0.0  # when the last results came if ticks were still out then, else 0
    times: Histogram = field(default_factory=Histogram)  # the samples, each for its ticks

    def results(self, n: int, left: int, now: float) -> None:
        """``n`` ticks' results came at ``now`` and ``left`` ticks are still out: if the
        worker had work all the time since the previous results, the interval is ``n``
        ticks of its own time."""
        if self.busy_since and n:
            sample = (now - self.busy_since) / n
            self.tick_s = sample if not self.tick_s else self.tick_s + _ALPHA * (sample - self.tick_s)
            self.times.observe(sample, n)
        self.busy_since = now if left > 0 else 0.0

    def credit(self, credit: int) -> int:
        """How many ticks may be out: ``credit``, fewer for a slow worker (at least 1: a
        worker slower than :data:`TARGET_S` a tick has its next value queued at the broker,
        sent the moment its result comes, so it idles a round trip, well under 1 %, and a
        new value waits one tick less)."""
        t = self.tick_s
        if t * credit <= TARGET_S:
            return credit
        return max(1, min(credit, math.ceil(TARGET_S / t)))

    def queued(self, capacity: int) -> int:
        """How many values may wait in an input buffer in front of it: ``capacity``,
        fewer for a slow worker (at least 1)."""
        t = self.tick_s
        if t * capacity <= TARGET_S:
            return capacity
        return max(1, math.ceil(TARGET_S / t))

    def bytes(self, limit: int) -> int:
        """A byte bound in front of it (in flight, or queued in an input): ``limit``, or
        :data:`PROBE_BYTES` until it is measured."""
        return limit if self.tick_s else min(limit, PROBE_BYTES)
