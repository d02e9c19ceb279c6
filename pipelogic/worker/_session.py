"""The worker's session with its broker: the handshake, rejoining after the broker
restarts, and the loop that hands ticks to the :class:`TickRunner` (``_runner.py``) and
snapshots to :class:`Snapshots` (``_snapshots.py``). The network is behind a
:class:`Transport` (``pipelogic.transport.link``): zmq in a real worker, in memory in unit
tests. One cohesive thing (the loop and what it answers between ticks: config, close, the
broker's confirmation of a snapshot), which is why it is longer than most modules.

Threads: the main thread owns the tick and result sockets and runs the user function;
a heartbeat thread owns a socket of its own (zmq sockets are not shared between threads),
so a long-running function keeps the worker visibly alive, and learns from the broker's
answers whether this incarnation was fenced or the broker is gone.

State (stateful mode): restored from the newest valid snapshot of this pipeline run
before the first tick; snapshotted by the policy, at the end and on SIGTERM. A snapshot is
written only after the broker confirmed (Sync/Applied) that it applied the results of every
tick the state reflects, and reported (Checkpoint) only once it is durable.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Literal

from pipelogic import _faults
from pipelogic import protocol as P
from pipelogic.component import ComponentSpec, load_component
from pipelogic.errors import BrokerLost, BrokerUnavailable, StateError, StateLocked, StopRequested
from pipelogic.shm.worker import SharedMemory
from pipelogic.state import DEFAULT_POLICY, SnapshotPolicy, SnapshotStore
from pipelogic.transport.link import Link, Transport, ZmqTransport
from pipelogic.types import InputsPullRequest
from pipelogic.worker._config import Config
from pipelogic.worker._greet import greet
from pipelogic.worker._inputs import InputDecoder
from pipelogic.worker._results import hold_limit
from pipelogic.worker._runner import TickRunner
from pipelogic.worker._settings import WorkerSettings
from pipelogic.worker._snapshots import Snapshots
from pipelogic.worker._step import Step
from pipelogic.worker._virtual import (
    VirtualInputStream,
    VirtualOutputStream,
    source_take,
    virtual_take,
)

__all__ = ["Session", "active_session", "on_sigterm"]

log = logging.getLogger("pipelogic.worker")

_POLL_MS = 100  # how often the loop looks at stop requests, liveness and due snapshots
_active: Session | None = None


def active_session() -> Session | None:
    """The session serving ticks in this process, if any (for the SIGTERM handler)."""
    return _active


def on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM: a serving worker finishes its tick, snapshots and returns from run() (exit
    0); before that, the process exits at once with 143. Python as PID 1 in a container
    would otherwise ignore SIGTERM."""
    session = _active
    if session is not None:
        session.request_stop()
    else:
        sys.exit(143)


class Session:
    """One worker process's session with its broker: from the first Hello to Goodbye,
    across rejoins after a broker restart (each rejoin is a new incarnation: new epoch, new
    link, state restored from the newest snapshot). The ticks themselves run in a
    :class:`TickRunner`; the durable state is kept by :class:`Snapshots`."""

    def __init__(
        self, settings: WorkerSettings, spec: ComponentSpec | None = None, transport: Transport | None = None
    ) -> None:
        self.settings = settings
        self.spec = spec if spec is not None else load_component(settings.component_dir)
        self.vertex = settings.vertex or self.spec.name
        self._sent_stats: tuple[Any, ...] | None = None  # the counters last sent (see _changed_stats)
        self._closed = False
        # One writer per state directory: lock before the handshake, so a second
        # worker cannot fence the first one before it finds out. A worker that finds the
        # lock taken asks the broker to join as one more instance instead: admitted only to
        # a replicated (stateless) vertex, and then it never writes a snapshot.
        self.store = SnapshotStore(Path(settings.state_dir) / self.vertex, self.vertex)
        self._locked_out: StateLocked | None = None
        try:
            self.store.lock()
        except StateLocked as exc:
            self._locked_out = exc
        self.snaps = Snapshots(self.store, self.vertex, settings.storage_retry_s, self._locked_out is not None)
        self.transport: Transport = transport if transport is not None else ZmqTransport(settings.broker)
        self.link: Link | None = None
        self.stop_requested = False  # SIGTERM: finish the tick, snapshot, leave
        self.shm = SharedMemory()  # this incarnation's shared-memory slots, if the broker offered them
        self.config: Config | None = None  # bound by bind_config; live updates go there
        self.runner: TickRunner | None = None  # set by serve
        self._initial_pull: InputsPullRequest | None = None  # what a new incarnation starts from
        self._pending: deque[tuple[P.Message, list[Any]]] = deque()  # received, not handled yet
        self.rejoins = 0
        self.welcome: P.Welcome
        self.epoch = 0
        self.run_id = ""
        try:
            self._accept(self._handshake(settings.connect_timeout_s, rejoin=False))
        except BaseException:
            self.transport.close()
            self.store.unlock()
            raise

    # -- handshake -------------------------------------------------------------------------

    def _handshake(self, timeout_s: float, rejoin: bool) -> P.Welcome:
        return greet(
            self.transport,
            self.settings.broker,
            self.spec,
            self.vertex,
            self._locked_out,
            timeout_s,
            rejoin,
            lambda: self.stop_requested,
        )

    def _accept(self, welcome: P.Welcome) -> None:
        self.welcome = welcome
        self.epoch = welcome.epoch
        ws = welcome.settings
        self.run_id = str(ws.get("run", ""))
        self.shm.accept(ws.get("shm"), self.vertex)
        try:
            self.snaps.policy = SnapshotPolicy.parse(
                ws.get("snapshot") or self.settings.snapshot or DEFAULT_POLICY,
                "snapshot policy (pipeline.yml or PIPELOGIC_SNAPSHOT)",
            )
        except ValueError as exc:
            raise StateError(f"vertex {self.vertex}: {exc}") from None

    def bind_config(self, config: Config) -> None:
        self.config = config
        config._bind(self.spec.config_schema, self.welcome.config, self.welcome.config_version)

    # -- sending ---------------------------------------------------------------------------

    @property
    def lost(self) -> str | None:
        return self.link.lost if self.link is not None else None

    @property
    def ticks_done(self) -> int:
        return self.runner.ticks_done if self.runner is not None else 0

    @property
    def next_tick(self) -> int:
        return self.runner.next_tick if self.runner is not None else 0

    def send(self, msg: P.Message, payload: list[Any] | None = None) -> None:
        """Send to the broker: BrokerLost if the broker went away meanwhile (the loop
        rejoins), BrokerUnavailable if it takes nothing for the send timeout."""
        assert self.link is not None
        if self.runner is not None and self.runner.held.layout:
            self.flush_results()  # what the broker applies first goes out first
        if self.shm.reader is not None:
            self.shm.reader.settle()  # a Failed (skip) releases the tick's slots too
        self.link.send(msg, payload)

    def flush_results(self) -> None:
        """Send the held results (one Results message), if any."""
        if self.runner is not None and self.runner.held.layout:
            assert self.link is not None
            layout, frames = self.runner.held.take()
            if self.shm.reader is not None:
                # Before the broker may give the input slots back: mark those the user
                # code still holds, so their producer never overwrites them.
                self.shm.reader.settle()
            self.link.send_frames(P.encode_results(self.epoch, layout, self._changed_stats(), frames))
            _faults.point("after-output-send")

    def say_goodbye(self) -> None:
        """Final counters and Goodbye; quick and silent if the broker is already gone."""
        if self.link is None:
            return
        self.link.send_timeout_s = 0.5
        try:
            self.send_stats()
            self.send(P.Goodbye(self.epoch))
        except BrokerUnavailable:
            pass

    def stats(self) -> P.WorkerStats:
        dropped, nothing, lost, queued, closed = self._counters()
        return P.WorkerStats(
            ticks=self.ticks_done,
            virtual_dropped=dropped,
            nothing_dropped=nothing,
            virtual_out_lost=lost,
            virtual_queued=queued,
            virtual_closed=closed,
        )

    def _counters(self) -> tuple[int, int, int, int, bool]:
        """The counters :meth:`stats` reports besides ticks, as a tuple: cheap to compare
        before every Results."""
        r = self.runner
        if r is None:
            return (0, 0, 0, 0, False)
        nothing = r.inputs.dropped if r.inputs is not None else 0
        vin = r.virtual_in
        return (vin.dropped, nothing, r.vout.lost, len(vin), vin.closed)

    def send_stats(self) -> None:
        """A heartbeat from the main thread, so final counters reach the broker."""
        self.send(P.Heartbeat(self.epoch, self.stats()))

    def close(self) -> None:
        global _active
        if self._closed:
            return
        self._closed = True
        if _active is self:
            _active = None
        if self.link is not None:
            self.link.close()
        self.shm.close()
        if not self.transport.close():
            log.warning(
                "vertex %s: zmq did not close its connections within 2 s (a slow DNS lookup of %s?); "
                "exiting without waiting",
                self.vertex,
                self.settings.broker,
            )
        self.store.unlock()

    # -- state (a StateChannel for the snapshots) ------------------------------------------

    def snapshot(self, timeout_s: float = 30.0) -> bool:
        """Write a snapshot of the current state if it moved; True if one was committed.
        Raises StateError (or SnapshotValueError) when the state cannot be written."""
        r = self.runner
        assert r is not None
        return self.snaps.snapshot(r.step, r.next_tick, r.pull_request, self.run_id, self, timeout_s)

    def confirm(self, tick: int, timeout_s: float) -> bool:
        """Sync: the broker's Applied reaching ``tick``, within ``timeout_s``; other messages
        are kept, in order, for the loop."""
        self.send(P.Sync(self.epoch, tick))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.lost is None:
            item = self._recv(_POLL_MS)
            if item is None:
                continue
            msg, payload = item
            if isinstance(msg, P.Applied):
                if msg.epoch == self.epoch and msg.tick >= tick:
                    return True
                continue
            self._pending.append((msg, payload))
        return False

    def interrupted(self) -> bool:
        return self.stop_requested or self.lost is not None

    def snapshot_due(self) -> bool:
        r = self.runner
        return r is not None and r.step.mode.stateful and self.snaps.due(r.next_tick)

    def request_stop(self) -> None:
        """SIGTERM: finish the current tick, snapshot, say goodbye, return from run()."""
        self.stop_requested = True

    # -- the loop --------------------------------------------------------------------------

    def serve(
        self,
        step: Step,
        pull_request: InputsPullRequest | None,
        virtual_in: VirtualInputStream,
        virtual_out: VirtualOutputStream,
    ) -> None:
        """Run ticks until the broker closes this worker or SIGTERM asks it to stop. A
        broker that goes silent or restarts is rejoined (state restored from the newest
        snapshot, the broker replays the rest); a fenced worker raises BrokerUnavailable."""
        global _active
        # A live source answers every tick at once (latency), and a vertex that waits for its
        # virtual queue does not hold results while it waits; others may hold a few.
        plain = not (step.mode.source or step.mode.virtual_input)
        limit = hold_limit(int(self.welcome.settings.get("credit", 1))) if plain else 1
        on_error: Literal["fail", "skip"] = "skip" if self.welcome.settings.get("on_error") == "skip" else "fail"
        self.runner = TickRunner(self.vertex, step, virtual_in, virtual_out, on_error, limit)
        # A camera's queue holds a few of the pipeline's frame times (a pull request may
        # need more messages queued than that: a streaming source's is bounded by count only).
        virtual_in.paced = step.mode.source and not step.mode.streaming
        vq = self.welcome.settings.get("virtual_queue") or {}
        if vq:
            virtual_in.configure(vq.get("size"), vq.get("bytes"), vq.get("keep"))
        self._initial_pull = pull_request
        if step.mode.stateful:
            # What a rejoin after a new run resets the state to (run() checked that it packs).
            self.snaps.initial = step.pack_state(self.vertex)
        _active = self
        while True:
            try:
                self._start_incarnation()
                self._loop()
                return
            except BrokerLost as exc:
                if not self._rejoin(str(exc)):
                    return

    def _start_incarnation(self) -> None:
        r = self.runner
        assert r is not None
        mode = r.step.mode
        inputs = InputDecoder(
            self.vertex,
            list(self.welcome.input_types),
            self.spec.input_types,
            self.shm.reader.resolve if self.shm.reader is not None else None,
        )
        r.step.place = self.shm.pool.place if self.shm.pool is not None else None
        resume: int | None = None
        pull = self._initial_pull
        if mode.stateful:
            resume, pull = self.snaps.restore(r.step, self.run_id, pull)
        r.begin(inputs, resume or 0, pull, int(self.welcome.settings.get("applied", 0)))
        self.link = self.transport.link(self.welcome, self.vertex, self.stats)
        pr = pull.to_wire() if pull else None
        self.send(P.Ready(self.epoch, mode.features(), pr, resume))

    def _rejoin(self, reason: str) -> bool:
        """Wait for the broker (capped exponential backoff with jitter) and say Hello again;
        False if SIGTERM came first (the last snapshot is kept)."""
        self.rejoins += 1
        timeout_s = self.settings.rejoin_timeout_s
        log.warning(
            "%s; keeping the state and rejoining (waiting up to %g s, PIPELOGIC_REJOIN_TIMEOUT_S)", reason, timeout_s
        )
        if self.link is not None:
            self.link.close()
            self.link = None
        self._pending.clear()
        if self.runner is not None:
            self.runner.held.clear()  # the new incarnation replays those ticks
        try:
            welcome = self._handshake(timeout_s, rejoin=True)
        except StopRequested:
            log.warning(
                "vertex %s: stopped while the broker was gone; its last snapshot (tick %d) is kept",
                self.vertex,
                self.snaps.tick,
            )
            return False
        self._accept(welcome)
        log.warning("vertex %s: rejoined the broker at %s (epoch %d)", self.vertex, self.settings.broker, self.epoch)
        return True

    def _loop(self) -> None:
        r = self.runner
        assert r is not None
        mode = r.step.mode
        while True:
            if self.lost is not None:
                assert self.link is not None
                raise (BrokerUnavailable if self.link.fenced else BrokerLost)(self.lost)
            if self.stop_requested:
                self._stop_gracefully()
                return
            # With regular and virtual inputs, the broker picks options by the virtual queue's
            # length: tell it promptly when that moves while we wait.
            watch = mode.virtual_input and mode.streaming and mode.n_inputs > 0
            item = self._next(10 if watch else _POLL_MS)
            if item is None:
                if watch and (stats := self._changed_stats()) is not None:
                    self.send(P.Heartbeat(self.epoch, stats))
                if self.snapshot_due():  # idle: the time trigger still applies
                    self.snapshot()
                continue
            msg, payload = item
            if isinstance(msg, P.Ticks):
                if msg.epoch != self.epoch:
                    continue
                if r.run(msg, payload, self):  # snapshots by the policy after each tick
                    self.flush_results()
                    if self.stop_requested:
                        self._stop_gracefully()
                    return
                if self._more_ticks_waiting():
                    continue  # hold these results: they go out with the next ticks' ones
                self.flush_results()
            elif isinstance(msg, P.ConfigPush):
                self._config(msg)
            elif isinstance(msg, P.Close):
                if msg.reason == "finished" and mode.stateful:
                    self.snapshot()  # the final state, which the broker waits for
                return
            elif not isinstance(msg, P.Applied):
                log.warning("vertex %s: unexpected %s from the broker", self.vertex, msg.KIND)

    def _more_ticks_waiting(self) -> bool:
        """Whether the next message is already here and is more ticks, while the held
        results are below the hold limit (then the loop holds them)."""
        r = self.runner
        assert r is not None
        if len(r.held) >= r.hold_limit or self.stop_requested or not r.held.layout or r.held.overdue(time.monotonic()):
            return False
        item = self._next(0)
        if item is None:
            return False
        self._pending.appendleft(item)
        return isinstance(item[0], P.Ticks)

    def _next(self, timeout_ms: int) -> tuple[P.Message, list[Any]] | None:
        """The next message from the broker (kept ones first), or None after the timeout."""
        if self._pending:
            return self._pending.popleft()
        return self._recv(timeout_ms)

    def _recv(self, timeout_ms: int) -> tuple[P.Message, list[Any]] | None:
        assert self.link is not None
        return self.link.recv(timeout_ms)

    def _stop_gracefully(self) -> None:
        if self.runner is not None and self.runner.step.mode.stateful and self.link is not None:
            self.link.send_timeout_s = 1.0  # a broker that is gone must not hold up the stop
            try:
                self.snapshot(timeout_s=2.0)
            except (StateError, BrokerUnavailable) as exc:
                log.error("%s", exc)

    def _config(self, msg: P.ConfigPush) -> None:
        if self.config is not None:
            self.config._apply(msg.values, msg.version)
        _faults.point("during-config-apply")
        self.send(P.ConfigApplied(self.epoch, msg.version))

    def _poll_control(self) -> bool:
        """While waiting on the virtual queue: handle config and close. True on close."""
        if any(isinstance(m, P.Close) for m, _ in self._pending):
            return True
        while (item := self._recv(0)) is not None:
            msg, payload = item
            if isinstance(msg, P.Close):
                return True
            if isinstance(msg, P.ConfigPush):
                self._config(msg)
            elif isinstance(msg, P.Ticks):
                self._pending.append((msg, payload))  # more grants: the loop runs them next
        return self.stop_requested or self.lost is not None

    # -- a RunnerIO for the tick runner ------------------------------------------------------

    def virtual_take(self, skip: int, min_count: int, max_count: int) -> list[Any] | None:
        assert self.runner is not None
        return virtual_take(self.runner.virtual_in, skip, min_count, max_count, self._poll_control)

    def source_take(self) -> list[Any] | bool | None:
        r = self.runner
        assert r is not None
        request = r.pull_request if r.step.mode.streaming else None
        return source_take(r.virtual_in, request, self._poll_control)

    def _changed_stats(self) -> P.WorkerStats | None:
        """The worker's counters if they moved since they were last sent (not counting
        ticks, which move every time), else None."""
        counters = self._counters()  # a tuple: this runs before every Results
        if counters == self._sent_stats:
            return None
        self._sent_stats = counters
        return self.stats()

    def wait_close(self) -> bool:
        while True:
            item = self._next(_POLL_MS)
            if item is not None and isinstance(item[0], P.Close):
                return True
            if item is None and (self.stop_requested or self.lost is not None):
                return True
