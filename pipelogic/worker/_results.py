"""Results of done ticks, held in the worker until they go out together.

A worker answers every tick, but not every tick needs a message of its own: when the
next batch of ticks is already waiting in the socket, the results of the ticks done so
far are held and sent with the next ones, so a busy worker sends one Results (and the
broker handles one message and pumps once) for several ticks. The session decides when
to send (:meth:`Session.flush_results`); anything else it sends flushes the held results
first, so the broker never sees a message out of order with the results before it.

A result is never held longer than :data:`HOLD_S`: batching pays for fast ticks (a
thousand of them share one message), never for slow ones (a model that takes 0.3 s a frame
sends each result as it is done, not 24 at a time after 7 s).
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["HOLD_S", "HeldResults", "hold_limit"]

HOLD_S = 0.005
"""The longest a done tick's result waits for others to go out with (seconds)."""


def hold_limit(credit: int) -> int:
    """How many done ticks a worker may hold: half its credit (at most 64), so the broker
    always has half its credit to send more ticks while the worker computes. (Measured with
    credit 16, batch 1: half gave 10-15 % more than a quarter, an eighth 15 % less, holding
    the whole credit 15 % less: the broker then idles until the batch comes back.)"""
    return max(1, min(64, credit // 2))


class HeldResults:
    """The layout and payload frames of a Results message being built."""

    __slots__ = ("first_at", "frames", "layout")

    def __init__(self) -> None:
        self.layout: list[Any] = []
        self.frames: list[Any] = []
        self.first_at = 0.0  # when the oldest held result was done (time.monotonic)

    def overdue(self, now: float) -> bool:
        """Whether the oldest held result has waited :data:`HOLD_S` or longer."""
        return bool(self.layout) and now - self.first_at >= HOLD_S

    def __len__(self) -> int:
        return len(self.layout)

    def add(self, tick: int, outputs: list[list[Any]], pull_request: Any) -> None:
        """A tick's outputs: per output, a list of values, each a sequence of frames."""
        if not self.layout:
            self.first_at = time.monotonic()
        counts = []
        frames = self.frames
        for values in outputs:
            counts.append([len(v) - 1 for v in values])
            for v in values:
                frames.extend(v)
        self.layout.append([tick, counts, pull_request])

    def add_empty(self, tick: int, n_outputs: int, pull_request: Any) -> None:
        """A tick that produced nothing (skipped on error, or a dropped Nothing)."""
        if not self.layout:
            self.first_at = time.monotonic()
        self.layout.append([tick, [[] for _ in range(n_outputs)], pull_request])

    def take(self) -> tuple[list[Any], list[Any]]:
        layout, frames = self.layout, self.frames
        self.layout, self.frames = [], []
        return layout, frames

    def clear(self) -> None:
        self.layout, self.frames = [], []
