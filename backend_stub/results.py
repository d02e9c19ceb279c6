"""Applying a worker's results to the broker's model: a pure function of it, like
:mod:`backend_stub.forming` for ticks (a replicated vertex's results go through
:func:`backend_stub.replicas.take_results`); :mod:`backend_stub.scheduler` calls it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend_stub.model import Value
from backend_stub.vertices import ComponentVertex, VertexState, WorkerVertex
from pipelogic.errors import ProtocolError
from pipelogic.types import InputsPullRequest

__all__ = ["apply_results"]


def apply_results(
    vs: WorkerVertex,
    entries: list[Any],
    emit: Callable[[VertexState, int, list[Value]], None],
    pull: Callable[[ComponentVertex, Any], InputsPullRequest | None],
    redelivery: bool,
    mark: Callable[[VertexState, int, int, float], None],
) -> None:
    """Apply the entries ``[(tick, [[value, ...] per output], pull request)]`` of one
    Results message from the single worker of ``vs``, in order: each must be the next tick
    expected (ProtocolError otherwise). A tick applied before (a replay) only counts as a
    duplicate; a new one counts as applied and its values go to ``emit``; a streaming
    vertex's next pull request (checked by ``pull``) comes with each. Then the log keeps only
    what a new incarnation could still need (``redelivery``: replays are on). A tick that
    carries a latency mark marks its first output message on each output (``mark``:
    :mod:`backend_stub.latency`)."""
    # Each output's values of the whole message go to the consumers in one emit (in
    # tick order, so exactly what one emit per tick would do); the finally emits what
    # was applied before a malformed entry, which the caller then refuses.
    streaming = vs.streaming
    log = vs.log
    base = log[0].tick if log else vs.next_tick
    outs: list[list[Value]] = [[] for _ in vs.consumers]
    marks: list[tuple[int, int, float]] = []
    try:
        for tick, per_output, pr in entries:
            if tick != vs.expect or tick >= vs.sent:
                raise ProtocolError(
                    f"vertex {vs.name}: result for tick {tick}, expected {vs.expect}"
                    if tick < vs.sent
                    else f"vertex {vs.name}: result for tick {tick}, which was never sent"
                )
            if not streaming:
                for vals in per_output:
                    if len(vals) > 1:
                        raise ProtocolError(
                            f"vertex {vs.name}: tick {tick}: more than one value per output in synchronous mode"
                        )
            vs.expect += 1
            born = 0.0
            if tick >= base:
                inf = log[tick - base]
                vs.inflight_bytes -= inf.size
                born = inf.born
            if tick < vs.applied:
                vs.duplicates += 1  # a replayed tick already applied: its outputs went out once
                continue
            vs.applied += 1
            vs.ticks += 1
            for k, values in enumerate(per_output):
                if values:
                    if born:
                        marks.append((k, vs.out_counts[k] + len(outs[k]), born))
                    outs[k] += values
            if pr is not None and streaming:
                vs.pull_request = pull(vs, pr)
    finally:
        for k, values in enumerate(outs):
            if values:
                emit(vs, k, values)
        for k, index, born in marks:
            mark(vs, k, index, born)
    if vs.sent == vs.expect:
        vs.inflight_bytes = 0  # nothing in flight: whatever the accounting missed is gone
    vs.trim(redelivery)
