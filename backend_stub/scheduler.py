"""The broker's logic: routing, tick formation, credit, backpressure, end of stream,
retention and replay.

Plain code, no sockets: each method takes a decoded message (and the time) and returns
:class:`Action` objects for the socket loop to carry out. Everything here can be driven
by unit tests.

Exactly-once (docs/semantics.md): every tick a vertex forms is recorded in its ``log``
with its exact composition. Ticks are numbered densely; ``applied`` counts the ticks whose
results were taken, in order, and a result for a tick below it is a duplicate and dropped.
A stateless vertex's log is trimmed as results arrive; a stateful one's only up to the
older of its last two durable checkpoints (the worker keeps two snapshot generations and
may fall back to the previous one). A new incarnation says where its restored state ends
(``Ready.resume``) and gets the logged ticks from there, composed exactly as before.

Bounds: a worker has at most ``credit`` ticks in flight (1 in streaming mode, whose
next pull request comes with each result); a producer dispatches a tick only if every
consumer buffer has room for what the in-flight ticks may add, so a synchronous edge never
buffers more than ``buffer_capacity`` messages. Streaming producers may overshoot by the
outputs of one tick.

One module for one state machine: every handler here reads and moves the same state (the
vertices, the epochs, the failure), and splitting the class would only spread that state
over files. What is a function of one vertex lives beside it: tick forming and sending in
:mod:`~backend_stub.forming`, results in :mod:`~backend_stub.results`, a replicated vertex's
dealing in :mod:`~backend_stub.replicas`, who may join in :mod:`~backend_stub.admission`,
status in :mod:`~backend_stub.observe`; the state of each kind of vertex is a class of
:mod:`~backend_stub.vertices`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend_stub import deadletter, replicas
from backend_stub.admission import clean_stats, hello_refusal, welcome_fields
from backend_stub.config import ConfigDesk
from backend_stub.forming import could_form, forms_ahead, room, send_ticks
from backend_stub.latency import TRACE_S, observe_written
from backend_stub.model import Action, CloseWorker, Instance, Journal, Send, Settings, Value
from backend_stub.observe import status_of
from backend_stub.refusals import Refusals
from backend_stub.results import apply_results
from backend_stub.tap import Taps
from backend_stub.vertices import (
    ComponentVertex,
    ReplicatedVertex,
    Served,
    SinkVertex,
    SourceVertex,
    VertexState,
    WorkerVertex,
    vertex_state,
)
from pipelogic import protocol as P
from pipelogic.errors import ProtocolError, PullRequestError
from pipelogic.pipeline import Pipeline
from pipelogic.types import InputsPullRequest

__all__ = ["Action", "Scheduler", "Settings"]

log = logging.getLogger("backend_stub")


class Scheduler:
    """The broker's state machine over one pipeline."""

    def __init__(self, pipeline: Pipeline, settings: Settings | None = None, fresh: bool = True) -> None:
        """``fresh``: a new run (file sinks start empty); False when a recovery store is
        about to rebuild the state of an earlier run (:mod:`backend_stub.store`)."""
        self.pipeline = pipeline
        self.settings = settings or Settings.from_pipeline(pipeline)
        self.vertices: dict[str, VertexState] = {}
        self.by_epoch: dict[int, Served] = {}
        self._next_epoch = 1
        self.incarnation = 0  # how many times a broker started on this store, all runs (0: no store)
        self.run_start = 0  # the incarnation that began this run (epochs count across runs; starts, per run)
        self.journal: Journal | None = None  # set by a broker with a recovery store
        self.broker_instance = ""  # this broker process (workers tell a restart by it)
        self.failed: str | None = None
        self.taps = Taps()  # operators watching output streams (pipelogic tap)
        self.done = False
        self.rejected = 0
        self.refusals = Refusals(log)  # malformed or impossible messages, per peer
        self.config = ConfigDesk()
        # Called with (epoch, split Results entries) before they are applied: the broker's
        # shared-memory registry swaps descriptor frames for the slots they name.
        self.adopt: Callable[[int, list[Any]], None] | None = None
        self.started = time.monotonic()
        self.now = self.started  # of the message or pump being handled (what _emit marks with)
        self.run = uuid.uuid4().hex  # snapshots made under another run are not resumed
        for name in pipeline.order:
            self.vertices[name] = vertex_state(pipeline, name, fresh, self.settings)
        self._workers_in_order = [
            vs for vs in self.vertices.values() if isinstance(vs, (WorkerVertex, ReplicatedVertex))
        ]
        # Where each vertex's dead-letter file ends: a restarted broker cuts it back here.
        self.dead_letter_offsets = {
            n: deadletter.size(deadletter.dead_letter_path(pipeline, vs))
            for n, vs in self.vertices.items()
            if vs.v.kind == "component"
        }

    def epoch_base(self, incarnation: int) -> None:
        """Number this broker start's worker epochs apart from every earlier start's, so a
        worker of a previous broker is never taken for a current one."""
        self.incarnation = incarnation
        self._next_epoch = max(self._next_epoch, incarnation * 1_000_000 + 1)

    # -- handshake -------------------------------------------------------------------------

    def hello(self, msg: P.Hello, now: float) -> P.Refuse | tuple[int, dict[str, Any]]:
        """Accept a worker: returns (epoch, welcome fields) or a Refuse. A new incarnation
        fences the old one: nothing the old one sends later is accepted, and its unanswered
        ticks go to the new one once it is ready (from its restored state, if stateful)."""
        vs = self.vertices.get(msg.vertex)
        refused = hello_refusal(self.vertices, vs, msg, now, self.settings)
        if refused is not None:
            return refused
        if isinstance(vs, ReplicatedVertex):
            return self._admit_instance(vs, msg, now)
        assert isinstance(vs, WorkerVertex)  # hello_refusal let a component's vertex through
        if vs.epoch is not None:
            self._fence(vs)
        if vs.connects_here > 0:
            vs.restarts += 1  # a new incarnation, after a crash or a graceful stop
        vs.connects_here += 1
        epoch = self._next_epoch
        self._next_epoch += 1
        vs.epoch = epoch
        vs.pid = msg.pid
        vs.host = msg.host
        vs.ready = False
        vs.connects += 1
        vs.last_seen = now
        self.by_epoch[epoch] = vs
        return epoch, self._welcome_fields(vs)

    def _admit_instance(self, vs: ReplicatedVertex, msg: P.Hello, now: float) -> tuple[int, dict[str, Any]]:
        """One more instance of a replicated vertex (or a restart of one: same instance id)."""
        epoch = self._next_epoch
        self._next_epoch += 1
        for old in replicas.admit(vs, epoch, msg, now):
            self.by_epoch.pop(old, None)
            replicas.release(vs, old, self.settings.redelivery)
            vs.restarts += 1
        self._apply_lost(vs)
        vs.pid = msg.pid
        vs.host = msg.host
        vs.connects += 1
        vs.last_seen = now
        self.by_epoch[epoch] = vs
        return epoch, self._welcome_fields(vs)

    def _apply_lost(self, vs: ReplicatedVertex) -> None:
        if not self.settings.redelivery and vs.done:
            replicas.apply_done(vs, self._emit, False, self._mark)

    def _welcome_fields(self, vs: ComponentVertex) -> dict[str, Any]:
        return welcome_fields(vs, self.settings, self.run, self.broker_instance, self.pipeline.settings.get("snapshot"))

    def _fence(self, vs: WorkerVertex) -> None:
        old = vs.epoch
        if old is not None:
            self.by_epoch.pop(old, None)
        vs.epoch = None
        vs.ready = False
        if not self.settings.redelivery:
            # The control setting: what was in flight is lost, as with bare PUSH/PULL.
            vs.applied = vs.next_tick
            vs.trim(False)
        vs.sent = vs.expect = vs.applied
        vs.inflight_bytes = 0

    def disconnect(self, epoch: int) -> list[Action]:
        """The worker of ``epoch`` is gone (exited or declared dead)."""
        vs = self.by_epoch.get(epoch)
        if vs is None:
            return []
        if isinstance(vs, ReplicatedVertex):
            self.by_epoch.pop(epoch, None)
            replicas.release(vs, epoch, self.settings.redelivery, lost=True)
            self._apply_lost(vs)
        else:
            self._fence(vs)
        return [CloseWorker(epoch)]

    def heartbeat(self, epoch: int, stats: P.WorkerStats, now: float) -> bool:
        """A heartbeat from the worker's side thread; False tells it that it was fenced."""
        vs = self._worker(epoch, now)
        if vs is None:
            return False
        vs.worker_stats = clean_stats(stats)
        return True

    def _worker(self, epoch: int, now: float) -> Served | None:
        vs = self.by_epoch.get(epoch)
        if vs is None:
            self.rejected += 1  # a fenced (old) incarnation, or garbage
            return None
        vs.last_seen = now
        if isinstance(vs, ReplicatedVertex):
            vs.instances[epoch].last_seen = now
        return vs

    # -- worker messages -------------------------------------------------------------------

    def on_message(self, msg: P.Message, payload: list[Any], now: float, pump: bool = True) -> list[Action]:
        """Apply one message from a worker; returns what to send. ``pump=False`` leaves the
        pump after Results to the caller, which then pumps once for a whole batch of them."""
        epoch = getattr(msg, "epoch", None)
        if not isinstance(epoch, int):
            raise ProtocolError(f"{msg.KIND} is not a worker-to-broker data message")
        self.now = now
        vs = self._worker(epoch, now)
        if vs is None:
            return []
        if isinstance(msg, P.Results):
            if msg.stats is not None:
                vs.worker_stats = clean_stats(msg.stats)
            entries = P.split_values(msg.layout, payload, len(vs.consumers))
            if self.adopt is not None:
                self.adopt(epoch, entries)
            before = vs.ticks
            if isinstance(vs, ReplicatedVertex):
                inst = vs.instances[epoch]
                replicas.take_results(vs, inst, entries, self._emit, self.settings.redelivery, self._mark)
                inst.pace.results(len(entries), len(inst.assigned), now)
            else:
                apply_results(vs, entries, self._emit, self._pull, self.settings.redelivery, self._mark)
            if vs.ticks != before:
                vs.moved(now)
            vs.pace.results(len(entries), vs.outstanding, now)
            if not pump:
                return []
        elif isinstance(msg, P.Sync):
            # Results travel on the same socket ahead of the Sync, so they are applied.
            return [Send(epoch, P.encode(P.Applied(epoch, vs.applied)), durable=True)]
        elif isinstance(msg, P.Checkpoint):
            if msg.tick <= vs.applied and (not vs.checkpoints or msg.tick > vs.checkpoints[-1]):
                vs.checkpoints.append(msg.tick)
                vs.trim(self.settings.redelivery)
            return []
        elif isinstance(msg, P.Heartbeat):
            vs.worker_stats = clean_stats(msg.stats)
            return self.pump(now) if "virtual_input" in vs.features else []  # the virtual queue grew
        elif isinstance(msg, P.Failed):
            return self._failed(vs, msg)
        elif isinstance(vs, ReplicatedVertex):
            return self._instance_message(vs, vs.instances[epoch], msg, now)
        elif isinstance(msg, P.Ready):
            if vs.ready:  # an incarnation says Ready once: a second one is forged or broken
                raise ProtocolError(f"vertex {vs.name}: a second Ready from epoch {epoch}")
            self._ready(vs, msg)
        elif isinstance(msg, P.ConfigApplied):
            return self.config.applied(vs, msg.version)
        elif isinstance(msg, P.Finished):
            actions: list[Action] = []
            # A source's unused grants: they carry no input, so nothing is lost.
            while vs.log and vs.log[-1].tick >= vs.applied:
                vs.log.pop()
            vs.next_tick = vs.sent = vs.expect = vs.applied
            vs.inflight_bytes = 0
            self._finish(vs, actions)
            return actions + self.pump(now)
        elif isinstance(msg, P.Goodbye):
            if not vs.finished:
                return self.disconnect(epoch) + self.pump(now)  # stopped early (SIGTERM)
            self.by_epoch.pop(epoch, None)
            vs.goodbye = True
            vs.epoch = None
            return [CloseWorker(epoch), *self.pump(now)]
        else:
            raise ProtocolError(f"unexpected {msg.KIND} on the data socket")
        return self.pump(now)

    def _instance_message(self, vs: ReplicatedVertex, inst: Instance, msg: P.Message, now: float) -> list[Action]:
        """Ready, ConfigApplied, Goodbye from an instance of a replicated vertex."""
        if isinstance(msg, P.Ready):
            if inst.ready:
                raise ProtocolError(f"vertex {vs.name}: a second Ready from epoch {inst.epoch}")
            inst.ready = True
            vs.ready = True
            vs.features = [str(f) for f in msg.features]
            why = replicas.refusal(vs)
            if why is not None:
                self._fail(why)
            if vs.finished:  # joined after the end (the broker lingers for late instances)
                closing: list[Action] = []
                self._close_instances(vs, closing)
                return closing
            return self.pump(now)
        if isinstance(msg, P.ConfigApplied):
            inst.config_version = msg.version
            return self.config.applied(vs, min(i.config_version for i in vs.instances.values() if i.ready))
        if isinstance(msg, P.Goodbye):
            # Closed at the end, or stopped early (SIGTERM: scaled down): then its unanswered
            # ticks go to the others.
            self.by_epoch.pop(inst.epoch, None)
            replicas.release(vs, inst.epoch, self.settings.redelivery)
            self._apply_lost(vs)
            return [CloseWorker(inst.epoch), *self.pump(now)]
        raise ProtocolError(f"vertex {vs.name}: unexpected {msg.KIND} from an instance of a replicated vertex")

    def _ready(self, vs: WorkerVertex, msg: P.Ready) -> None:
        vs.features = [str(f) for f in msg.features]
        vs.ready = True
        if msg.pull_request is not None:
            if vs.applied == 0:  # later, the pull request comes from the last applied result
                vs.pull_request = self._pull(vs, msg.pull_request)
        elif vs.streaming:
            self._fail(f"vertex {vs.name}: streaming mode without an initial pull request")
        start = vs.applied
        if vs.stateful and not vs.virtual_source and self.settings.redelivery:
            start = msg.resume if msg.resume is not None else 0
            if start > vs.applied:
                self._fail(
                    f"vertex {vs.name}: the worker restored a state reaching tick {start}, but the "
                    f"broker has applied only {vs.applied} ticks (a snapshot from another run?)"
                )
                return
            if start < vs.log_base:
                self._fail(
                    f"vertex {vs.name}: the worker restored a state reaching tick {start}, but the "
                    f"broker retains ticks from {vs.log_base} on (were its snapshots deleted?)"
                )
                return
            # The worker's store now holds the snapshot it loaded (and maybe older ones):
            # count checkpoints afresh, so retention never passes its previous generation.
            vs.checkpoints = deque([start], maxlen=2)
        vs.replayed += vs.next_tick - start if vs.connects > 1 else 0
        vs.sent = vs.expect = start
        vs.inflight_bytes = 0

    def _pull(self, vs: ComponentVertex, wire: Any) -> InputsPullRequest | None:
        try:
            pr = InputsPullRequest.from_wire(wire)
            pr.check_inputs(len(vs.inputs), vs.name)
            return pr
        except PullRequestError as exc:
            msg = str(exc)
            self._fail(msg if vs.name in msg else f"component {vs.name}: {msg}")
            return None

    def _failed(self, vs: Served, msg: P.Failed) -> list[Action]:
        if msg.tick < vs.applied:
            return []  # a replayed tick that was skipped (and dead-lettered) before
        msg = deadletter.checked_failure(vs, msg)
        vs.errors += 1
        if msg.fatal:
            vs.failed = self.failed is None
            error = msg.error.removeprefix(f"vertex {vs.name}: ")
            self._fail(f"vertex {vs.name} failed on tick {msg.tick}: {error}\n{msg.traceback}".rstrip())
            return []
        path = deadletter.dead_letter_path(self.pipeline, vs)
        self.dead_letter_offsets[vs.name] = deadletter.append(path, deadletter.dead_letter_record(vs, msg))
        vs.dead_lettered += 1
        return []

    def dead_letter_path(self, vertex: str) -> Path:
        return deadletter.dead_letter_path(self.pipeline, self.vertices[vertex])

    def _fail(self, cause: str) -> None:
        if self.failed is None:
            self.failed = cause

    # -- config ----------------------------------------------------------------------------

    def config_set(self, msg: P.ConfigSet, client: Any, now: float) -> list[Action]:
        """Validate and push a live config update; the reply waits for the worker to apply it."""
        return self.config.set(
            self.vertices.get(msg.vertex),
            msg,
            client,
            now,
            [n for n, vs in self.vertices.items() if vs.v.component is not None],
            self.pipeline.directory,
        )

    def expire(self, now: float) -> list[Action]:
        """Answer config requests whose wait ran out; declare silent workers dead."""
        out = self.config.expire(now)
        limit = self.settings.heartbeat_ms * self.settings.liveness / 1000
        for epoch, vs in list(self.by_epoch.items()):
            seen = vs.instances[epoch].last_seen if isinstance(vs, ReplicatedVertex) else vs.last_seen
            if now - seen > limit and not vs.goodbye:
                out.extend(self.disconnect(epoch))
        return out

    # -- scheduling ------------------------------------------------------------------------

    def pump(self, now: float | None = None) -> list[Action]:
        """Move everything that can move: sources produce, ticks go out, sinks write,
        finished vertices close their outputs. Returns the sends."""
        now = time.monotonic() if now is None else now
        self.now = now
        actions: list[Action] = []
        if self.failed is not None or self.done:
            return actions
        for _ in range(2):  # a second pass lets closes made late in the first one propagate
            for name in self.pipeline.order:
                vs = self.vertices[name]
                if vs.finished and not self._catching_up(vs):
                    continue
                if isinstance(vs, SourceVertex):
                    self._pump_source(vs, now)
                elif isinstance(vs, SinkVertex):
                    self._pump_sink(vs, now)
                elif isinstance(vs, ReplicatedVertex):
                    self._pump_replicated(vs, actions, now)
                elif isinstance(vs, WorkerVertex):
                    self._pump_worker(vs, actions, now)
        # Done once every vertex finished and every stateful worker confirmed its final state.
        if all(vs.closed_for_good for vs in self.vertices.values()):
            self.done = True
        return actions

    def pump_workers(self) -> list[Action]:
        """One pass of :meth:`pump` over the worker vertices only: the ticks that can go
        now, without waiting for the sources and sinks (the loop sends these first, then
        pumps everything)."""
        actions: list[Action] = []
        if self.failed is not None or self.done:
            return actions
        now = time.monotonic()
        for vs in self._workers_in_order:
            if not vs.finished or self._catching_up(vs):
                if isinstance(vs, ReplicatedVertex):
                    self._pump_replicated(vs, actions, now)
                else:
                    self._pump_worker(vs, actions, now)
        return actions

    @staticmethod
    def _catching_up(vs: VertexState) -> bool:
        """A finished vertex whose worker (re)connected after the end: it still gets the
        replay its restored state needs, then Close (found by the model test)."""
        if isinstance(vs, ReplicatedVertex):
            return any(i.ready and not i.closed for i in vs.instances.values())
        return isinstance(vs, WorkerVertex) and vs.epoch is not None and vs.ready and vs.closed_epoch != vs.epoch

    def _emit(self, vs: VertexState, k: int, values: list[Value]) -> None:
        first = vs.out_counts[k]
        vs.out_counts[k] += len(values)
        if self.taps.rings:
            self.taps.offer(vs.name, k, first, values)
        if self.journal is not None and vs.JOURNALED and vs.consumers[k]:
            self.journal.add(vs.stream_names[k], first, values)
        for cname, j in vs.consumers[k]:
            self.vertices[cname].inputs[j].push(values)
        if not vs.inputs and self.now >= vs.next_mark:  # a source (built in, or a camera)
            vs.next_mark = self.now + TRACE_S  # one message marked for the sinks' latency
            self._mark(vs, k, first, self.now)

    def _mark(self, vs: VertexState, k: int, index: int, born: float) -> None:
        """Message ``index`` of output ``k`` of ``vs`` carries a latency mark from ``born``."""
        for cname, j in vs.consumers[k]:
            c = self.vertices[cname]
            if not c.finished:  # one that takes nothing more would only collect marks
                c.inputs[j].traced.append((index, born))

    def _finish(self, vs: VertexState, actions: list[Action] | None = None) -> None:
        vs.finished = True
        for consumers in vs.consumers:
            for cname, j in consumers:
                self.vertices[cname].inputs[j].closed = True
        if not isinstance(vs, ComponentVertex):
            return  # a source: no inputs, no worker
        for buf in vs.inputs:
            n = buf.clear()
            vs.dropped_at_end += n
            buf.consumed += n
        if not vs.stateful and "virtual_output" not in vs.features:
            vs.goodbye = True  # nothing to wait for: no final state to write, no virtual output to deliver
        if actions is None:
            return
        if isinstance(vs, ReplicatedVertex):
            self._close_instances(vs, actions)
        elif isinstance(vs, WorkerVertex) and vs.epoch is not None and vs.ready and vs.expect == vs.next_tick:
            vs.closed_epoch = vs.epoch
            actions.append(Send(vs.epoch, P.encode(P.Close("finished")), durable=True))

    def _pump_source(self, vs: SourceVertex, now: float) -> None:
        values, failure = vs.source.pump(min(room(self.vertices, vs, 0), vs.settings.credit), now)
        if failure is not None:
            self._fail(failure)
            return
        if values:
            vs.ticks += len(values)
            vs.moved(now)
            self._emit(vs, 0, values)
        if vs.source.exhausted:
            self._finish(vs)

    def _pump_sink(self, vs: SinkVertex, now: float) -> None:
        sink = vs.sink
        buf = vs.inputs[0]
        first = buf.consumed
        written, failure = sink.pump(buf, vs.name, now)
        if failure is not None:
            self._fail(failure)
            return
        if written and buf.traced:
            observe_written(buf, first, written, now, vs.latency)
        if written:
            vs.ticks += written
            vs.moved(now)
        if buf.closed and not buf.queue:
            sink.close()
            vs.finished = True

    @staticmethod
    def _close_instances(vs: ReplicatedVertex, actions: list[Action]) -> None:
        """The vertex finished: stop each ready instance (each has answered all its ticks)."""
        for i in vs.instances.values():
            if i.ready and not i.closed:
                i.closed = True
                actions.append(Send(i.epoch, P.encode(P.Close("finished")), durable=True))

    def _pump_replicated(self, vs: ReplicatedVertex, actions: list[Action], now: float) -> None:
        replicas.deal(vs, self.vertices, self.journal, actions, now)
        if vs.finished:
            self._close_instances(vs, actions)  # instances that joined after the end
        elif vs.applied == vs.next_tick and vs.inputs and all(b.closed for b in vs.inputs) and not could_form(vs):
            self._finish(vs, actions)

    def _pump_worker(self, vs: WorkerVertex, actions: list[Action], now: float) -> None:
        if vs.epoch is None or not vs.ready:
            if (
                not vs.finished
                and not vs.virtual_source
                and vs.inputs
                and vs.applied == vs.next_tick
                and all(b.closed and not b.queue for b in vs.inputs)
            ):
                self._finish(vs, actions)  # nothing will ever arrive
            return
        credit = vs.pace.credit(vs.settings.credit)
        if vs.sent - vs.expect >= credit and vs.applied != vs.next_tick:
            # No credit left (the usual case when pumped between results): nothing to send,
            # and with ticks formed and not applied, nothing finishes. Except a fast worker
            # at credit 1, whose next tick is formed now and held for its next results.
            if forms_ahead(vs):
                for send in send_ticks(vs, self.vertices, self.journal, 2):
                    send.ahead = vs.sent - 1  # one tick: the credit allows one more
                    actions.append(send)
            return
        if vs.sent < vs.next_tick or not vs.inputs or vs.streaming or all(b.queue for b in vs.inputs):
            # A replay is owed, or a tick may form (else this pass has nothing to send: most
            # pumps of most vertices, which is why it is asked before anything is built).
            idle = vs.sent == vs.expect
            actions.extend(send_ticks(vs, self.vertices, self.journal, credit))
            if idle and vs.sent != vs.expect:
                vs.pace.busy_since = now  # its time per tick counts from here
        if vs.finished:
            # A worker that (re)connected after the end: once it has caught up, stop it.
            if vs.expect == vs.next_tick and vs.closed_epoch != vs.epoch:
                vs.closed_epoch = vs.epoch
                actions.append(Send(vs.epoch, P.encode(P.Close("finished")), durable=True))
            return
        if (
            vs.applied == vs.next_tick
            and not vs.virtual_source
            and all(b.closed for b in vs.inputs)
            and not could_form(vs)
        ):
            self._finish(vs, actions)

    # -- status ----------------------------------------------------------------------------

    def status(self) -> P.StatusReply:
        """Every vertex's counters and state, the streams' counts, the run's state."""
        return status_of(self.pipeline, self.vertices, self.failed, self.done)

    def buffered(self) -> int:
        """Messages held in input buffers now (not counting in-flight ticks)."""
        return sum(len(b.queue) for vs in self.vertices.values() for b in vs.inputs)

    def close_all(self, reason: str) -> list[Action]:
        # Not to a worker already told to stop: it may be gone, and a send to it would
        # only wait for nobody.
        return [Send(e, P.encode(P.Close(reason))) for e, vs in list(self.by_epoch.items()) if not _told_to_stop(vs, e)]


def _told_to_stop(vs: Served, epoch: int) -> bool:
    """Whether the incarnation ``epoch`` of ``vs`` was told to stop because it finished."""
    if isinstance(vs, ReplicatedVertex):
        inst = vs.instances.get(epoch)
        return inst is not None and inst.closed
    return vs.closed_epoch == epoch
