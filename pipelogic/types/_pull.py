"""Pull-request primitives of streaming mode (checked on construction).

``StreamPullShift.from_fixed(skip, min_pull, max_pull)``: on one input, drop the next
``skip`` messages, then deliver between ``min_pull`` and ``max_pull`` of them.
``InputsPullOption([shift per input], virtual_shift=None)``: one acceptable combination.
``InputsPullRequest(option | [options])``: options in priority order; the first one that is
satisfiable fires. Wire form: ``[[[skip, min, max], ...], [skip, min, max] | None]`` per option,
then the string ``"flush_at_end"`` if the request asks for the tail of its streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipelogic.errors import PullRequestError

__all__ = ["InputsPullOption", "InputsPullRequest", "StreamPullShift"]

MAX_PULL = 1 << 31


class StreamPullShift:
    """Skip ``skip`` messages of one input, then take ``min_pull``..``max_pull`` of them."""

    __slots__ = ("max_pull", "min_pull", "skip")

    def __init__(self, skip: int, min_pull: int, max_pull: int) -> None:
        for name, v in (("skip", skip), ("min_pull", min_pull), ("max_pull", max_pull)):
            if type(v) is not int:
                raise PullRequestError(f"StreamPullShift {name} must be an int, got {type(v).__name__} ({v!r})")
            if not 0 <= v <= MAX_PULL:
                raise PullRequestError(f"StreamPullShift {name} must be in 0..{MAX_PULL}, got {v}")
        if min_pull > max_pull:
            raise PullRequestError(f"StreamPullShift min_pull ({min_pull}) is greater than max_pull ({max_pull})")
        self.skip = skip
        self.min_pull = min_pull
        self.max_pull = max_pull

    @classmethod
    def from_fixed(cls, skip: int, min_pull: int, max_pull: int) -> StreamPullShift:
        """Skip ``skip`` messages, then pull between ``min_pull`` and ``max_pull`` more."""
        return cls(skip, min_pull, max_pull)

    def consumes(self) -> bool:
        return self.skip + self.max_pull > 0

    def to_wire(self) -> list[int]:
        return [self.skip, self.min_pull, self.max_pull]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StreamPullShift) and self.to_wire() == other.to_wire()

    def __hash__(self) -> int:
        return hash(tuple(self.to_wire()))

    def __repr__(self) -> str:
        return f"StreamPullShift.from_fixed({self.skip}, {self.min_pull}, {self.max_pull})"


class InputsPullOption:
    """One acceptable pull: one shift per declared input, in order, and an optional
    shift for the virtual input queue."""

    __slots__ = ("shifts", "virtual_shift")

    def __init__(self, shifts: Sequence[StreamPullShift], virtual_shift: StreamPullShift | None = None) -> None:
        if isinstance(shifts, StreamPullShift) or not isinstance(shifts, (list, tuple)):
            raise PullRequestError(f"InputsPullOption expects a list of StreamPullShift, got {type(shifts).__name__}")
        for i, s in enumerate(shifts):
            if not isinstance(s, StreamPullShift):
                raise PullRequestError(f"InputsPullOption shift {i} must be a StreamPullShift, got {type(s).__name__}")
        if virtual_shift is not None and not isinstance(virtual_shift, StreamPullShift):
            raise PullRequestError(
                f"virtual_shift must be a StreamPullShift or None, got {type(virtual_shift).__name__}"
            )
        self.shifts = tuple(shifts)
        self.virtual_shift = virtual_shift
        if not any(s.consumes() for s in self.shifts) and not (virtual_shift is not None and virtual_shift.consumes()):
            raise PullRequestError("InputsPullOption would consume nothing (every shift has skip + max_pull == 0)")

    def to_wire(self) -> list[Any]:
        v = self.virtual_shift.to_wire() if self.virtual_shift is not None else None
        return [[s.to_wire() for s in self.shifts], v]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InputsPullOption) and self.to_wire() == other.to_wire()

    def __hash__(self) -> int:
        return hash(repr(self.to_wire()))

    def __repr__(self) -> str:
        v = f", virtual_shift={self.virtual_shift!r}" if self.virtual_shift else ""
        return f"InputsPullOption({list(self.shifts)!r}{v})"


class InputsPullRequest:
    """One option, or a list of options in priority order.

    ``flush_at_end=True``: once every input has ended and no option can fire, the first
    option fires once more with what is left (on each stream, skip what it can, then take
    up to ``max_pull``), until nothing is left, so the tail shorter than ``min_pull`` is
    delivered instead of dropped. Live data is windowed exactly as without it."""

    __slots__ = ("flush_at_end", "options")

    def __init__(self, options: InputsPullOption | Sequence[InputsPullOption], flush_at_end: bool = False) -> None:
        if type(flush_at_end) is not bool:
            raise PullRequestError(f"flush_at_end must be True or False, got {flush_at_end!r}")
        self.flush_at_end = flush_at_end
        opts = [options] if isinstance(options, InputsPullOption) else options
        if not isinstance(opts, (list, tuple)) or not opts:
            raise PullRequestError(
                f"InputsPullRequest expects an InputsPullOption or a non-empty list of them, got {options!r}"
            )
        for i, o in enumerate(opts):
            if not isinstance(o, InputsPullOption):
                raise PullRequestError(
                    f"InputsPullRequest option {i} must be an InputsPullOption, got {type(o).__name__}"
                )
        widths = {len(o.shifts) for o in opts}
        if len(widths) != 1:
            raise PullRequestError(f"InputsPullRequest options have different numbers of shifts: {sorted(widths)}")
        self.options = tuple(opts)

    def check_inputs(self, n_inputs: int, component: str) -> None:
        """Raise unless every option has exactly one shift per declared input."""
        n = len(self.options[0].shifts)
        if n != n_inputs:
            raise PullRequestError(
                f"component {component}: pull request has {n} shift(s) per option but the "
                f"component declares {n_inputs} input(s)"
            )

    def to_wire(self) -> list[Any]:
        out: list[Any] = [o.to_wire() for o in self.options]
        return [*out, "flush_at_end"] if self.flush_at_end else out

    @classmethod
    def from_wire(cls, data: Any) -> InputsPullRequest:
        """Rebuild a request from its wire form; malformed data is a PullRequestError."""
        try:
            flush = type(data) is list and bool(data) and data[-1] == "flush_at_end"
            if flush:
                data = data[:-1]
            opts = []
            for shifts, virtual in data:
                vs = StreamPullShift(*virtual) if virtual is not None else None
                opts.append(InputsPullOption([StreamPullShift(*s) for s in shifts], vs))
            return cls(opts, flush)
        except PullRequestError:
            raise
        except (TypeError, ValueError) as exc:
            raise PullRequestError(f"malformed pull request {data!r}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InputsPullRequest) and self.to_wire() == other.to_wire()

    def __hash__(self) -> int:
        return hash(repr(self.to_wire()))

    def __repr__(self) -> str:
        flush = ", flush_at_end=True" if self.flush_at_end else ""
        return f"InputsPullRequest({list(self.options)!r}{flush})"
