"""Replicated vertices: a stateless component run as several worker instances
(``replicas: N`` in pipeline.yml, ``pipelogic up --scale VERTEX=N``).

The vertex keeps one log of ticks, numbered densely as for a single worker; the broker
deals them to its live instances (each with its own credit, the least loaded first), and
applies their results in tick order: a result that comes early waits in ``done`` until
every tick before it is applied, so consumers see exactly what one instance would have
produced, each result once. An instance answers its ticks in the order it got them, which
the broker checks. When an instance dies (or is fenced by a restart of itself) its
unanswered ticks go back on ``retry`` and are dealt again first, lowest first, to whichever
instance has credit; its late results are never taken (its epoch is gone), so nothing is
applied twice. Bounds: at most ``credit`` ticks per instance, ``2 x credit x instances``
formed and unapplied per vertex (the consumers' room counts them all, so a synchronous
edge still buffers at most ``buffer_capacity``), and results held for order at most
``inflight_bytes``. A stopped instance therefore holds the others up only once they are a
credit each ahead of it, until the liveness bound declares it dead and its ticks move.

Only a vertex without state of its own can be spread like this: a stateful, streaming or
virtual one is refused at its first Ready (:func:`refusal`). Plain code: the scheduler
calls these functions and keeps the epochs' bookkeeping.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from backend_stub.forming import room, take_tick
from backend_stub.model import Action, Inflight, Instance, Journal, Send, Value
from backend_stub.vertices import ReplicatedVertex, VertexState
from pipelogic import protocol as P
from pipelogic.errors import ProtocolError

__all__ = ["admit", "apply_done", "deal", "expecting", "refusal", "release", "take_results"]

Emit = Callable[[VertexState, int, list[Value]], None]
Mark = Callable[[VertexState, int, int, float], None]


def admit(vs: ReplicatedVertex, epoch: int, msg: P.Hello, now: float) -> list[int]:
    """Add an instance; returns the epochs it replaces (a live instance with the same id:
    the same worker, restarted or reconnecting), which the caller fences."""
    replaced = [e for e, i in vs.instances.items() if i.name == msg.instance]
    vs.instances[epoch] = Instance(epoch, msg.instance, msg.pid, msg.host, now)
    vs.seen.add(msg.instance)
    if msg.pid in vs.lost_pids:
        vs.lost_pids.remove(msg.pid)
    return replaced


def expecting(vs: VertexState) -> bool:
    """Whether a finished replicated vertex may still hear from an instance: one is
    connected and not gone, or fewer instances than ``replicas`` said Hello (a container
    that started late). The broker lingers a little for them, so they are told the vertex
    finished instead of waiting for a broker that is gone."""
    return isinstance(vs, ReplicatedVertex) and (bool(vs.instances) or len(vs.seen) < vs.v.replicas)


def release(vs: ReplicatedVertex, epoch: int, redelivery: bool, lost: bool = False) -> Instance | None:
    """Remove an instance; its unanswered ticks go back to be dealt again (without
    redelivery, the control setting, they are lost: applied with no output). ``lost``:
    declared dead while its process may live on (the supervisor kills it by pid)."""
    inst = vs.instances.pop(epoch, None)
    if inst is None:
        return None
    for t in inst.assigned:
        if redelivery:
            heapq.heappush(vs.retry, t)
        else:
            vs.done[t] = None
    inst.assigned.clear()
    if lost:
        vs.lost_pids.append(inst.pid)
    return inst


def refusal(vs: ReplicatedVertex) -> str | None:
    """Why the vertex cannot run as several instances (its worker's features), or None."""
    why = []
    if vs.stateful:
        why.append("stateful (one state, which every tick updates in order)")
    if vs.streaming:
        why.append("streaming (each pull request depends on the ticks before it)")
    if vs.virtual_source or "virtual_input" in vs.features or "virtual_output" in vs.features:
        why.append("virtual (its virtual messages are one instance's own, with no order across instances)")
    if not why:
        return None
    return (
        f"vertex {vs.name}: replicas: {vs.v.replicas} needs a stateless component in synchronous mode, "
        f"but its worker is {' and '.join(why)}; run it as one instance (replicas: 1)"
    )


def deal(
    vs: ReplicatedVertex,
    vertices: dict[str, VertexState],
    journal: Journal | None,
    actions: list[Action],
    now: float,
) -> None:
    """Send ticks to the ready instances: retried ones first, then logged ones never sent
    (after a broker restart), then new ones; each to the least loaded instance that has
    credit (in ticks and in bytes)."""
    ready = [i for i in vs.instances.values() if i.ready and not i.closed]
    if not ready:
        return
    settings = vs.settings
    credit = settings.credit
    max_bytes = settings.inflight_bytes
    # Each instance's credit, paced by its own time per tick.
    paced = {i.epoch: i.pace.credit(credit) for i in ready}
    # Formed and unapplied ticks: each instance's credit, and as much again for results that
    # wait for a slow instance's older tick (the consumers' room bounds them too).
    window = 2 * sum(paced.values())
    batch = settings.message_ticks
    pending: dict[int, tuple[list[Any], list[Any]]] = {}
    while True:
        best: Instance | None = None
        for i in ready:
            n = len(i.assigned)
            if (
                n < paced[i.epoch]
                and (n == 0 or i.inflight_bytes < i.pace.bytes(max_bytes))
                and (best is None or n < len(best.assigned))
            ):
                best = i
        if best is None:
            break
        inf = _next(vs, vertices, journal, window)
        if inf is None:
            break
        if not best.assigned:
            best.pace.busy_since = now  # its time per tick counts from here
        if not vs.pace.busy_since:
            vs.pace.busy_since = now
        best.assigned.append(inf.tick)
        best.inflight_bytes += inf.size
        out = pending.get(best.epoch)
        if out is None:
            out = pending[best.epoch] = ([], [])
        layout, frames = out
        layout.append([inf.tick, [[len(v) - 1 for v in values] for values in inf.composition], inf.extra])
        for values in inf.composition:
            for v in values:
                frames.extend(v)
        if len(layout) >= batch:
            actions.append(Send(best.epoch, P.encode(P.Ticks(best.epoch, layout), frames)))
            del pending[best.epoch]
    for epoch, (layout, frames) in pending.items():
        actions.append(Send(epoch, P.encode(P.Ticks(epoch, layout), frames)))


def _next(
    vs: ReplicatedVertex, vertices: dict[str, VertexState], journal: Journal | None, window: int
) -> Inflight | None:
    if vs.retry:
        return vs.entry(heapq.heappop(vs.retry))
    if vs.sent < vs.next_tick:
        inf = vs.entry(vs.sent)
        vs.sent += 1
        return inf
    if vs.finished:
        return None
    unapplied = vs.next_tick - vs.applied  # each may still add one message per consumer
    if unapplied >= window or vs.done_bytes >= vs.settings.inflight_bytes:
        return None  # the instance that owes the oldest tick holds the rest up this far, no further
    if room(vertices, vs, unapplied) < 1:
        return None
    return take_tick(vs, journal)


def take_results(
    vs: ReplicatedVertex, inst: Instance, entries: list[Any], emit: Emit, redelivery: bool, mark: Mark
) -> None:
    """An instance's results (``split_values`` entries): checked against what it owes, held
    until every earlier tick is done, then applied in order."""
    for tick, per_output, _pr in entries:
        if not inst.assigned or inst.assigned[0] != tick:
            owed = f"tick {inst.assigned[0]}" if inst.assigned else "nothing"
            raise ProtocolError(
                f"vertex {vs.name}: instance {inst.name} (epoch {inst.epoch}) sent a result for "
                f"tick {tick}; it owes {owed}"
            )
        size = 0
        for values in per_output:
            if len(values) > 1:
                raise ProtocolError(
                    f"vertex {vs.name}: tick {tick}: more than one value per output in synchronous mode"
                )
            for v in values:
                size += len(v[0]) if len(v) == 1 else sum(len(f) for f in v)
        inst.assigned.popleft()
        inst.inflight_bytes -= vs.entry(tick).size
        inst.ticks += 1
        vs.done[tick] = (per_output, size)
        vs.done_bytes += size
    if not inst.assigned:
        inst.inflight_bytes = 0  # nothing in flight: whatever the accounting missed is gone
    apply_done(vs, emit, redelivery, mark)


def apply_done(vs: ReplicatedVertex, emit: Emit, redelivery: bool, mark: Mark) -> None:
    """Apply the done results that are next in tick order (a tick with a latency mark
    marks its outputs, as :func:`backend_stub.results.apply_results` does)."""
    done = vs.done
    applied = vs.applied
    while applied in done:
        entry = done.pop(applied)
        tick = applied
        applied += 1
        if entry is None:
            continue  # lost with its instance (redelivery 0)
        per_output, size = entry
        vs.done_bytes -= size
        vs.ticks += 1
        vs.applied = applied  # emit may look at it (taps, the journal)
        log = vs.log
        born = log[tick - log[0].tick].born if log and tick >= log[0].tick else 0.0
        for k, values in enumerate(per_output):
            if values:
                index = vs.out_counts[k]
                emit(vs, k, values)
                if born:
                    mark(vs, k, index, born)
    if applied != vs.applied:
        vs.applied = applied
    vs.trim(redelivery)
