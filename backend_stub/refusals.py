"""Messages the broker refused, counted per peer, logged once per peer per interval.

A peer is what the message lets the broker tell: the vertex whose epoch it carries, or
``unknown`` when it could not be decoded or names no live incarnation (a fenced worker, a
forger guessing epochs), or ``control`` on the control socket. Counting per peer shows an
operator who is misbehaving (``pipelogic status``, the metrics); logging at most once per
peer per interval keeps a flood of bad messages from flooding the log as well.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

__all__ = ["LOG_INTERVAL_S", "Refusals"]

LOG_INTERVAL_S = 10.0


class Refusals:
    """Per-peer counts of refused messages, with rate-limited logging."""

    def __init__(self, log: logging.Logger, interval_s: float = LOG_INTERVAL_S) -> None:
        self.counts: Counter[str] = Counter()
        self._log = log
        self._interval = interval_s
        self._next_log: dict[str, float] = {}
        self._quiet: Counter[str] = Counter()  # refused since the last line about that peer

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def refuse(self, peer: str, why: str, now: float | None = None, bug: bool = False) -> None:
        """Count a refused message from ``peer``; log ``why`` unless that peer was logged
        less than the interval ago (the next line says how many were not). With ``bug``
        (called while handling an unexpected exception) the line is an error with the
        traceback: a bug is loud, but a peer that triggers it a thousand times a second
        gets one traceback per interval, not a thousand."""
        now = time.monotonic() if now is None else now
        self.counts[peer] += 1
        if now < self._next_log.get(peer, 0.0):
            self._quiet[peer] += 1
            return
        quiet = self._quiet.pop(peer, 0)
        more = f" ({quiet} more from {peer} since the last report)" if quiet else ""
        if bug:
            self._log.error("refused a message from %s: %s%s", peer, why[:500], more, exc_info=True)
        else:
            self._log.warning("refused a message from %s: %s%s", peer, why[:500], more)
        self._next_log[peer] = now + self._interval
