"""The pull-request decision: which option fires, and what it takes. Pure and shared by
the broker (regular inputs) and the worker (its virtual input queue).

An option is satisfiable when every stream holds at least ``skip + min_pull`` messages.
Options are tried in priority order; the first satisfiable one that would consume at least
one message fires at once, taking on each stream ``skip`` messages to drop and then
``k = min(max_pull, available - skip)`` to deliver. A vertex is finished when every input is
closed and no option fires. A component with regular inputs and a virtual input: the
broker knows the worker's virtual queue length (the worker reports it with its results and
whenever it changes while idle), and an option whose ``virtual_shift`` that length cannot
satisfy does not fire; the next option may. With ``flush_at_end``, once every input is closed the first
option also fires on what is left (fewer than ``min_pull``), until nothing is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipelogic.types import InputsPullRequest, StreamPullShift

__all__ = ["Decision", "decide", "finished", "take_shift"]


@dataclass(frozen=True)
class Decision:
    option: int
    takes: tuple[tuple[int, int], ...]  # (skip, count) per stream
    virtual: StreamPullShift | None = None

    @property
    def consumed(self) -> int:
        return sum(s + k for s, k in self.takes)


def take_shift(available: int, shift: StreamPullShift) -> tuple[int, int] | None:
    """(skip, count) that ``shift`` takes from a stream holding ``available``, or None
    when it is not satisfiable."""
    if available < shift.skip + shift.min_pull:
        return None
    return shift.skip, min(shift.max_pull, available - shift.skip)


def decide(
    lengths: Sequence[int], request: InputsPullRequest, closed: Sequence[bool] | None = None, virtual: int | None = None
) -> Decision | None:
    """The option that fires now for these buffer lengths, or None. ``closed``: which
    inputs have ended (for ``flush_at_end``). ``virtual``: how many messages the worker's
    virtual queue holds (None: not known, the worker waits for them); an option with a
    ``virtual_shift`` the queue cannot satisfy does not fire."""
    for idx, opt in enumerate(request.options):
        if virtual is not None and opt.virtual_shift is not None and take_shift(virtual, opt.virtual_shift) is None:
            continue
        takes = []
        for n, shift in zip(lengths, opt.shifts):
            t = take_shift(n, shift)
            if t is None:
                break
            takes.append(t)
        else:
            d = Decision(idx, tuple(takes), opt.virtual_shift)
            if d.consumed > 0 or (not lengths and opt.virtual_shift is not None):
                return d
    if request.flush_at_end and lengths and closed is not None and all(closed) and any(lengths):
        first = request.options[0]
        tail = tuple((min(s.skip, n), min(s.max_pull, n - min(s.skip, n))) for n, s in zip(lengths, first.shifts))
        return Decision(0, tail, first.virtual_shift)
    return None


def finished(lengths: Sequence[int], closed: Sequence[bool], request: InputsPullRequest) -> bool:
    """True when nothing will ever fire again: every input closed and no option fires."""
    return all(closed) and decide(lengths, request, closed) is None
