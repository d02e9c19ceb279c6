"""Flow control and tick forming: how much a vertex may still produce into its consumers'
buffers (in messages and in bytes), and how the next tick is taken off its input queues.
Pure functions of the broker's model; :mod:`backend_stub.scheduler` calls them."""

from __future__ import annotations

from typing import Any

from backend_stub.latency import born_in
from backend_stub.model import Inflight, Journal, Send, Value, value_size
from backend_stub.vertices import ComponentVertex, VertexState, WorkerVertex
from pipelogic import protocol as P
from pipelogic.pulling import decide

__all__ = ["AHEAD_S", "could_form", "form_tick", "forms_ahead", "room", "send_ticks", "take_tick", "virtual_queue"]

AHEAD_S = 0.001
"""A worker with ``credit: 1`` faster than this a tick has its next tick formed ahead."""

# Stream types whose values are a few bytes: no need to learn their size before sending more.
_SMALL = frozenset(["Bool", "Char", "Int32", "Int64", "UInt32", "UInt64", "Float", "Double"])


def room(vertices: dict[str, VertexState], vs: VertexState, extra: int) -> int:
    """How many more messages each consumer buffer of ``vs`` can take, given ``extra``
    already promised (in-flight ticks): the consumer's ``buffer_capacity`` and
    ``buffer_bytes``, and for a slow synchronous consumer about :data:`pacing.TARGET_S` of
    its work."""
    applied = vs.applied if isinstance(vs, ComponentVertex) else 0
    room = vs.settings.buffer_capacity  # no consumers: counting it down only ends a pass early
    for k, consumers in enumerate(vs.consumers):
        for cname, j in consumers:
            c = vertices[cname]
            if c.finished:
                continue
            cap = c.settings.buffer_capacity
            cap_bytes = c.settings.buffer_bytes
            if isinstance(c, ComponentVertex) and not c.streaming:
                # A pull request may need many messages queued; a synchronous tick needs one.
                cap = c.pace.queued(cap)
                cap_bytes = c.pace.bytes(cap_bytes)
            buf = c.inputs[j]
            room = min(room, cap - len(buf.queue) - extra)
            if buf.last_size:
                # In bytes: as many more as fit if they weigh what the last one did (in-flight
                # ticks count too); an empty buffer always takes one, however large.
                fit = (cap_bytes - buf.nbytes) // buf.last_size if buf.queue else max(1, cap_bytes // buf.last_size)
                room = min(room, fit - extra)
            elif buf.received == 0 and applied == 0 and str(vs.v.output_types[k]) not in _SMALL:
                room = min(room, 1 - extra)  # no value yet: learn what they weigh from the first
    return room


def forms_ahead(vs: WorkerVertex) -> bool:
    """Whether the next tick of ``vs``, whose credit is used up, is formed now and held by
    the broker until the worker's next Results arrive (then it goes before they are even
    applied). Only for a fast synchronous worker at ``credit: 1``: there the worker idles
    while the broker applies each result and forms the next tick, a third of a round trip
    (docs/benchmarks.md). The worker itself still never holds more than one tick; the value
    is taken off its input less than :data:`AHEAD_S` early; a slow worker (the pacing's
    one-in-flight case) keeps its next value queued instead, so a newer one may still
    replace it upstream, and never gets a tick ahead."""
    return (
        vs.settings.credit == 1  # then its paced credit is 1 too
        and 0.0 < vs.pace.tick_s < AHEAD_S
        and vs.sent == vs.next_tick  # no replay owed
        and vs.sent - vs.expect == 1
        and not vs.finished
        and bool(vs.inputs)
        and "streaming" not in vs.features
        and "virtual_input" not in vs.features
        and all(b.queue for b in vs.inputs)
    )


def could_form(vs: ComponentVertex) -> bool:
    """Whether a tick could form now or later from what is queued (ignoring credit): an
    option waiting only for the virtual queue, which is still open, may fire later."""
    if vs.streaming:
        queued, closed = virtual_queue(vs)
        return (
            vs.pull_request is not None
            and decide(
                [len(b.queue) for b in vs.inputs],
                vs.pull_request,
                [b.closed for b in vs.inputs],
                queued if closed else None,
            )
            is not None
        )
    return all(b.queue for b in vs.inputs)


def virtual_queue(vs: ComponentVertex) -> tuple[int | None, bool]:
    """The worker's virtual queue (length, closed) as last reported (empty until it
    reports); (None, False) for a vertex without both kinds of input."""
    if "virtual_input" not in vs.features or not vs.inputs:
        return None, False
    return int(vs.worker_stats.get("virtual_queued", 0)), bool(vs.worker_stats.get("virtual_closed", False))


def form_tick(
    vs: ComponentVertex, record: bool
) -> tuple[list[list[Value]], Any, list[tuple[int, int, int]], float] | None:
    """Take the next tick's messages off the input queues of a virtual source or a
    streaming vertex (:func:`take_tick` forms synchronous ticks itself): (composition,
    virtual shift, starts, the earliest latency mark) or None if no tick can form.
    ``record``: note where each input's part starts (only a recovery store needs it)."""
    if vs.virtual_source:
        return [], None, [], 0.0
    if vs.pull_request is None:
        return None
    d = decide([len(b.queue) for b in vs.inputs], vs.pull_request, [b.closed for b in vs.inputs], virtual_queue(vs)[0])
    if d is None:
        return None
    composition = []
    starts = []
    born = 0.0
    for buf, (skip, count) in zip(vs.inputs, d.takes):
        if record:
            starts.append((buf.consumed, skip, count))
        if buf.traced:
            t = born_in(buf, buf.consumed + skip, buf.consumed + skip + count)
            born = min(born, t) if born and t else born or t
        buf.consumed += skip + count
        for _ in range(skip):
            buf.pop()
        composition.append([buf.pop() for _ in range(count)])
    extra = d.virtual.to_wire() if d.virtual is not None else None
    return composition, extra, starts, born


def take_tick(vs: ComponentVertex, journal: Journal | None) -> Inflight | None:
    """Form the next tick, log it (and journal it for the recovery store), count it as
    sent; None if no tick can form now."""
    inputs = vs.inputs
    if inputs and "streaming" not in vs.features:
        # Synchronous (the usual case, once per tick on the hot path): one message of each
        # input, once every input has one (the zip rule).
        for b in inputs:
            if not b.queue:
                return None
        starts = [(b.consumed, 0, 1) for b in inputs] if journal is not None else []
        composition = []
        size = 0
        born = 0.0
        for b in inputs:
            v = b.queue.popleft()
            n = len(v[0]) if len(v) == 1 else value_size(v)
            b.nbytes -= n
            if b.traced:  # a sampled message (backend_stub.latency): its tick carries the mark
                born = born_in(b, b.consumed, b.consumed + 1) or born
            b.consumed += 1
            size += n
            composition.append([v])
        inf = Inflight(vs.next_tick, composition, None, starts, size, born)
    else:
        entry = form_tick(vs, record=journal is not None)
        if entry is None:
            return None
        composition, extra, starts, born = entry
        size = sum(value_size(v) for values in composition for v in values)
        inf = Inflight(vs.next_tick, composition, extra, starts, size, born)
        if journal is not None and inputs:  # a pull request shaped it: the store needs it
            journal.ticks.append((vs.name, inf))
    vs.log.append(inf)
    vs.next_tick += 1
    vs.sent += 1
    return inf


def send_ticks(vs: WorkerVertex, vertices: dict[str, VertexState], journal: Journal | None, credit: int) -> list[Send]:
    """The Ticks messages that go to the worker of ``vs`` now: first a replay of logged
    ticks its incarnation has not had, then new ones while ``credit`` (its paced credit in
    ticks) and ``inflight_bytes``, the consumers' room and the inputs allow, up to
    ``settings.message_ticks`` ticks a message."""
    assert vs.epoch is not None
    sends: list[Send] = []
    layout: list[Any] = []
    frames: list[Any] = []
    max_bytes = vs.pace.bytes(vs.settings.inflight_bytes)
    batch = vs.settings.message_ticks
    streaming = vs.streaming
    fits: int | None = None  # how many more new ticks the consumers' buffers take
    # Credit in ticks and in bytes (the broker holds each in-flight tick's values for a
    # replay); one tick always goes, however large.
    while (out := vs.sent - vs.expect) < credit and (out == 0 or vs.inflight_bytes < max_bytes):
        if vs.sent < vs.next_tick:
            inf = vs.entry(vs.sent)  # a replay: exactly the composition it had
            vs.sent += 1
        else:
            # New ticks; a streaming vertex's next pull request comes with each result.
            if vs.finished or (streaming and not vs.virtual_source and out > 0):
                break
            # Synchronous: each in-flight tick may still add one message per consumer.
            # The consumers' buffers do not change while this loop runs, so the room
            # is computed once: each new tick takes one of it (none when streaming,
            # where only the queued messages count). Without consumers the room is
            # the capacity, and counting it down only ends this pass early.
            if fits is None:
                fits = room(vertices, vs, 0 if streaming else out)
            elif not streaming:
                fits -= 1
            if fits < 1:
                break
            new = take_tick(vs, journal)
            if new is None:
                break
            inf = new
        vs.inflight_bytes += inf.size
        layout.append([inf.tick, [[len(v) - 1 for v in values] for values in inf.composition], inf.extra])
        for values in inf.composition:
            for v in values:
                frames.extend(v)
        if len(layout) >= batch:
            sends.append(Send(vs.epoch, P.encode_ticks(vs.epoch, layout, frames)))
            layout, frames = [], []
    if layout:
        sends.append(Send(vs.epoch, P.encode_ticks(vs.epoch, layout, frames)))
    return sends
