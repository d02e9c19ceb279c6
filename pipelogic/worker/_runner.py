"""The tick runner: a batch of ticks in, held results out. No socket: what it must tell the
broker in the middle of a batch (a failed tick, the end of a source, results that must go
out before it waits) goes through the :class:`RunnerIO` its session gives it.

One runner serves a worker process across its incarnations; :meth:`TickRunner.begin`
starts each one (the broker's input types, the tick the state reaches, the pull request).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal, Protocol

from pipelogic import _faults
from pipelogic import protocol as P
from pipelogic._tracebacks import user_traceback
from pipelogic.errors import (
    BrokerLost,
    DecodeError,
    OutputTypeError,
    PullRequestError,
    ReturnShapeError,
    SlotGone,
    WorkerError,
)
from pipelogic.types import InputsPullRequest
from pipelogic.worker._inputs import InputDecoder
from pipelogic.worker._results import HOLD_S, HeldResults
from pipelogic.worker._step import Step
from pipelogic.worker._virtual import VirtualInputStream, VirtualOutputStream

__all__ = ["RunnerIO", "TickRunner"]

log = logging.getLogger("pipelogic.worker")

_TICK_ERRORS = (WorkerError, ReturnShapeError, OutputTypeError, DecodeError, PullRequestError)


class RunnerIO(Protocol):
    """What a batch of ticks needs from its session."""

    epoch: int
    stop_requested: bool

    def send(self, msg: P.Message) -> None:
        """Send to the broker (held results first)."""

    def send_stats(self) -> None: ...

    def flush_results(self) -> None:
        """Send the held results now."""

    def snapshot_due(self) -> bool: ...

    def snapshot(self) -> bool: ...

    def source_take(self) -> list[Any] | bool | None:
        """A source's next virtual messages; False at the end of its queue; None to stop."""

    def virtual_take(self, skip: int, min_count: int, max_count: int) -> list[Any] | None: ...

    def wait_close(self) -> bool:
        """After a source's Finished: wait for the broker's Close."""


class TickRunner:
    """Runs the ticks of one worker process through its :class:`Step`."""

    def __init__(
        self,
        vertex: str,
        step: Step,
        virtual_in: VirtualInputStream,
        virtual_out: VirtualOutputStream,
        on_error: Literal["fail", "skip"],
        hold_limit: int,
    ) -> None:
        self.vertex = vertex
        self.step = step
        self.virtual_in = virtual_in
        self.vout = virtual_out
        self.on_error = on_error  # pipeline.yml
        self.hold_limit = hold_limit  # results held while more ticks wait (see _results.py)
        self.held = HeldResults()  # done ticks whose results go out with the next ones
        self.inputs: InputDecoder | None = None  # this incarnation's decoder (begin)
        self.pull_request: InputsPullRequest | None = None  # streaming: the current request
        self.next_tick = 0  # the state reflects every tick below this
        self.ticks_done = 0  # in this process, across incarnations
        self.replay_until = 0  # ticks below were applied before this incarnation (replays)

    def begin(
        self, inputs: InputDecoder, next_tick: int, pull_request: InputsPullRequest | None, replay_until: int
    ) -> None:
        """A new incarnation: its input decoder, the tick its state reaches, its request."""
        self.inputs = inputs
        self.next_tick = next_tick
        self.pull_request = pull_request
        self.replay_until = replay_until
        self.held.clear()  # a new incarnation replays those ticks

    def run(self, msg: P.Ticks, payload: list[Any], io: RunnerIO) -> bool:
        """Run a batch of ticks; True when the worker should stop."""
        mode = self.step.mode
        assert self.inputs is not None
        entries = P.split_values(msg.layout, payload, mode.n_inputs)
        held = self.held
        stop = False
        for tick, per_input, extra in entries:
            virtual: list[Any] | None = None
            if mode.source:
                got = io.source_take()
                if got is None:
                    stop = True
                    break
                if got is False:
                    io.send_stats()  # after the held results
                    io.send(P.Finished(io.epoch))
                    return io.wait_close()
                virtual = got  # type: ignore[assignment]
            elif mode.virtual_input:
                if tick < self.replay_until:
                    virtual = []  # a replay: its virtual messages are gone (docs/semantics.md)
                elif mode.streaming and isinstance(extra, list) and len(extra) == 3:
                    virtual = io.virtual_take(*extra)
                    if virtual is None:
                        stop = True
                        break
                else:
                    virtual = self.virtual_in.take(0, len(self.virtual_in))
            try:
                try:
                    inputs = self.inputs.decode(per_input, mode.streaming)
                except SlotGone as exc:
                    raise BrokerLost(str(exc)) from None
                if inputs is None:  # a Nothing dropped by the Maybe unpack adapter: no call, no output
                    held.add_empty(tick, mode.n_outputs, None)
                    self.ticks_done += 1
                    self.next_tick = tick + 1
                    continue
                started = time.monotonic()
                out = self.step.call(inputs, virtual, tick)
                inputs = None  # the user's values may map shared memory: hold none of them past the call
                _faults.point("after-state-update-before-checkpoint")
                if out.virtual_output and tick >= self.replay_until:  # replays were delivered
                    if held.layout and self.vout.would_block(len(out.virtual_output)):
                        io.flush_results()  # done ticks go out before we wait
                    self.vout.emit(out.virtual_output)
                if self.vout.error is not None:
                    raise WorkerError(
                        f"vertex {self.vertex}: the virtual_out callback raised "
                        f"{type(self.vout.error).__name__}: {self.vout.error}"
                    ) from self.vout.error
            except _TICK_ERRORS as exc:
                fatal = self.on_error != "skip" or isinstance(exc, (DecodeError, PullRequestError))
                tb = user_traceback(exc.__cause__) if exc.__cause__ is not None else ""
                io.send(P.Failed(io.epoch, tick, str(exc), tb, fatal))
                if fatal:
                    exc.reported_to_broker = True
                    raise
                log.warning("%s (tick %d skipped, inputs sent to the dead-letter file)", exc, tick)
                pr = self.pull_request.to_wire() if self.pull_request is not None else None
                held.add_empty(tick, mode.n_outputs, pr)
                self.ticks_done += 1
                self.next_tick = tick + 1
                continue
            if out.pull_request is not None:
                self.pull_request = out.pull_request
            held.add(tick, out.outputs, out.pull_request.to_wire() if out.pull_request is not None else None)
            self.ticks_done += 1
            self.next_tick = tick + 1
            now = time.monotonic()
            if mode.source or now - started >= HOLD_S or held.overdue(now):
                # Live sources: no batching, every tick goes out at once. Others: a slow
                # tick's result goes out when it is done, with those held before it, not
                # after the rest of the batch; fast ones are held up to HOLD_S.
                io.flush_results()
            if io.snapshot_due():
                io.snapshot()  # its Sync sends the held results first: the broker holds them
            if io.stop_requested:
                break  # the rest of the batch is unanswered: the broker gives it to the next one
        if len(held) >= self.hold_limit:
            io.flush_results()
        return stop
