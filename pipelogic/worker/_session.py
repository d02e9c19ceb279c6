"""The worker's connection to the broker: handshake, data sockets, the tick loop and
durable state.

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
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelogic import _faults
from pipelogic import protocol as P
from pipelogic._tracebacks import user_traceback
from pipelogic.component import ComponentSpec, load_component
from pipelogic.errors import (
    BrokerLost,
    BrokerUnavailable,
    DecodeError,
    OutputTypeError,
    PullRequestError,
    ReturnShapeError,
    SnapshotValueError,
    StateError,
    StateLocked,
    WorkerError,
)
from pipelogic.state import DEFAULT_POLICY, SnapshotPolicy, SnapshotStore
from pipelogic.transport import broker_address
from pipelogic.transport.link import Link, Transport, ZmqTransport
from pipelogic.types import InputsPullRequest
from pipelogic.worker._config import Config
from pipelogic.worker._greet import StopRequested, greet
from pipelogic.worker._inputs import InputDecoder
from pipelogic.worker._results import HeldResults, hold_limit
from pipelogic.worker._shm import SharedMemory, SlotGone
from pipelogic.worker._snapshots import Snapshots
from pipelogic.worker._step import Mode, Step
from pipelogic.worker._virtual import (
    VirtualInputStream,
    VirtualOutputStream,
    source_take,
    virtual_take,
)

__all__ = ["Session", "WorkerSettings", "active_session", "on_sigterm"]

log = logging.getLogger("pipelogic.worker")

_TICK_ERRORS = (WorkerError, ReturnShapeError, OutputTypeError, DecodeError, PullRequestError)
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


@dataclass
class WorkerSettings:
    """Where a worker finds its broker, its component and its state directory."""

    broker: str
    component_dir: Path
    vertex: str | None = None
    state_dir: Path = Path(".pipelogic/state")
    connect_timeout_s: float = 60.0
    rejoin_timeout_s: float = 600.0  # how long a worker whose broker went away waits for it
    storage_retry_s: float = 600.0  # how long a worker retries a snapshot its disk refuses
    snapshot: str | None = None  # PIPELOGIC_SNAPSHOT: the policy when pipeline.yml sets none

    @classmethod
    def from_env(cls, main_file: str | None = None) -> WorkerSettings:
        env = os.environ
        cdir = env.get("PIPELOGIC_COMPONENT_DIR")
        if cdir:
            component_dir = Path(cdir)
        elif main_file:
            component_dir = Path(main_file).resolve().parent.parent
        else:
            component_dir = Path.cwd()
        return cls(
            broker=broker_address(),
            component_dir=component_dir,
            vertex=env.get("PIPELOGIC_COMPONENT") or None,
            state_dir=Path(env.get("PIPELOGIC_STATE_DIR", ".pipelogic/state")),
            connect_timeout_s=float(env.get("PIPELOGIC_CONNECT_TIMEOUT_S", "60")),
            rejoin_timeout_s=float(env.get("PIPELOGIC_REJOIN_TIMEOUT_S", "600")),
            storage_retry_s=float(env.get("PIPELOGIC_STORAGE_RETRY_S", "600")),
            snapshot=env.get("PIPELOGIC_SNAPSHOT") or None,
        )


class Session:
    """One worker process's session with its broker: from the first Hello to Goodbye,
    across rejoins after a broker restart (each rejoin is a new incarnation: new epoch,
    new :class:`BrokerLink`, state restored from the newest snapshot)."""

    def __init__(
        self, settings: WorkerSettings, spec: ComponentSpec | None = None, transport: Transport | None = None
    ) -> None:
        self.settings = settings
        self.spec = spec if spec is not None else load_component(settings.component_dir)
        self.vertex = settings.vertex or self.spec.name
        self.ticks_done = 0
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
        self.snaps = Snapshots(self.store, self.vertex, settings.storage_retry_s)
        self.transport: Transport = transport if transport is not None else ZmqTransport(settings.broker)
        self.link: Link | None = None
        self.stop_requested = False  # SIGTERM: finish the tick, snapshot, leave
        self.shm = SharedMemory()  # this incarnation's shared-memory slots, if the broker offered them
        try:
            self._accept(self._handshake(settings.connect_timeout_s, rejoin=False))
        except BaseException:
            self.transport.close()
            self.store.unlock()
            raise
        self.virtual_in: VirtualInputStream | None = None
        self._held = HeldResults()  # done ticks whose results go out with the next ones
        self._pending: deque[tuple[P.Message, list[Any]]] = deque()
        self.next_tick = 0  # the state reflects every tick below this
        self.rejoins = 0

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
        self.replay_until = int(ws.get("applied", 0))  # ticks below were applied before
        self.shm.accept(ws.get("shm"), self.vertex)
        try:
            self.snaps.policy = SnapshotPolicy.parse(
                ws.get("snapshot") or self.settings.snapshot or DEFAULT_POLICY,
                "snapshot policy (pipeline.yml or PIPELOGIC_SNAPSHOT)",
            )
        except ValueError as exc:
            raise StateError(f"vertex {self.vertex}: {exc}") from None

    def bind_config(self, config: Config) -> None:
        config._bind(self.spec.config_schema, self.welcome.config, self.welcome.config_version)

    # -- data ------------------------------------------------------------------------------

    def open_data(self) -> None:
        self.link = self.transport.link(self.welcome, self.vertex, self.stats)

    @property
    def lost(self) -> str | None:
        return self.link.lost if self.link is not None else None

    def send(self, msg: P.Message, payload: list[Any] | None = None) -> None:
        """Send to the broker: BrokerLost if the broker went away meanwhile (the loop
        rejoins), BrokerUnavailable if it takes nothing for the send timeout."""
        assert self.link is not None
        if self._held.layout:
            self._flush_results()  # what the broker applies first goes out first
        if self.shm.reader is not None:
            self.shm.reader.settle()  # a Failed (skip) releases the tick's slots too
        self.link.send(msg, payload)

    def _flush_results(self) -> None:
        """Send the held results (one Results message), if any."""
        if self._held.layout:
            assert self.link is not None
            layout, frames = self._held.take()
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

    def stats(self) -> dict[str, Any]:
        return {"ticks": self.ticks_done, **dict(zip(_COUNTERS, self._counters()))}

    def _counters(self) -> tuple[Any, ...]:
        """The values of ``_COUNTERS``, as a tuple: cheap to compare before every Results."""
        vin, inputs, vout = self.virtual_in, getattr(self, "inputs", None), getattr(self, "vout", None)
        if vin is None:
            return (0, inputs.dropped if inputs is not None else 0, vout.lost if vout is not None else 0, 0, False)
        return (
            vin.dropped,
            inputs.dropped if inputs is not None else 0,
            vout.lost if vout is not None else 0,
            len(vin),
            vin.closed,
        )

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

    # -- state -----------------------------------------------------------------------------

    def restore(self) -> int:
        """Load the newest valid snapshot of this run into the step; return the tick it
        reaches (0 for a fresh start: the initial state)."""
        if self._initial_state is not None:
            self.step.load_state(self._initial_state, self.vertex)
        self.pull_request = self._initial_pull
        snap = self.snaps.load(self.run_id)
        if snap is None:
            return 0
        self.step.load_state(snap.state, self.vertex)
        pr = snap.meta.get("pull_request")
        if pr is not None:
            self.pull_request = InputsPullRequest.from_wire(pr)
        log.info(
            "vertex %s: restored state at tick %d (snapshot generation %d)", self.vertex, snap.tick, snap.generation
        )
        return snap.tick

    def snapshot(self, timeout_s: float = 30.0) -> bool:
        """Write a snapshot of the current state if it moved; True if one was committed.
        Raises StateError (or SnapshotValueError) when the state cannot be written."""
        tick = self.next_tick
        if tick <= self.snaps.tick or self._locked_out is not None:
            return False  # one more instance, without the lock: the lock holder's state only
        try:
            data = self.step.pack_state(self.vertex)  # an unserialisable state fails here, first
        except SnapshotValueError as exc:
            # Permanent: a restart would run into it again. The broker fails the run with it.
            self.send(P.Failed(self.epoch, tick, f"{exc} (at the snapshot after tick {tick - 1})", "", True))
            exc.reported_to_broker = True
            raise
        meta = {"pull_request": self.pull_request.to_wire() if self.pull_request is not None else None}
        return self.snaps.take(
            tick,
            data,
            self.run_id,
            meta,
            confirm=lambda t: self._confirm(t, timeout_s),
            report=lambda t: self.send(P.Checkpoint(self.epoch, t)),
            interrupted=lambda: self.stop_requested or self.lost is not None,
        )

    def _confirm(self, tick: int, timeout_s: float) -> bool:
        self.send(P.Sync(self.epoch, tick))
        return self._wait_applied(tick, timeout_s)

    def _wait_applied(self, tick: int, timeout_s: float) -> bool:
        """Wait for the broker's Applied reaching ``tick``; other messages are kept, in
        order, for the loop."""
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

    def _snapshot_due(self) -> bool:
        return self.step.mode.stateful and self.snaps.due(self.next_tick)

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
        self.virtual_in = virtual_in
        self.step = step
        self.vout = virtual_out
        self.on_error = str(self.welcome.settings.get("on_error", "fail"))
        # A live source answers every tick at once (latency), and a vertex that waits for its
        # virtual queue does not hold results while it waits; others may hold a few.
        plain = not (step.mode.source or step.mode.virtual_input)
        self._hold_limit = hold_limit(int(self.welcome.settings.get("credit", 1))) if plain else 1
        self._initial_pull = pull_request
        self._initial_state = None
        if step.mode.stateful:
            # What a rejoin after a new run resets the state to (run() checked that it packs).
            self._initial_state = step.pack_state(self.vertex)
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
        mode = self.step.mode
        self.inputs = InputDecoder(
            self.vertex,
            list(self.welcome.input_types),
            self.spec.input_types,
            self.shm.reader.resolve if self.shm.reader is not None else None,
        )
        self.step.place = self.shm.pool.place if self.shm.pool is not None else None
        self.pull_request = self._initial_pull
        resume = self.restore() if mode.stateful else None
        self.next_tick = resume or 0
        self.open_data()
        pr = self.pull_request.to_wire() if self.pull_request else None
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
        self._held.clear()  # the new incarnation replays those ticks
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
        mode = self.step.mode
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
                if self._snapshot_due():  # idle: the time trigger still applies
                    self.snapshot()
                continue
            msg, payload = item
            if isinstance(msg, P.Ticks):
                if msg.epoch != self.epoch:
                    continue
                if self._ticks(msg, payload):  # snapshots by the policy after each tick
                    self._flush_results()
                    if self.stop_requested:
                        self._stop_gracefully()
                    return
                if self._more_ticks_waiting():
                    continue  # hold these results: they go out with the next ticks' ones
                self._flush_results()
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
        if len(self._held) >= self._hold_limit or self.stop_requested or not self._held.layout:
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
        if self.step.mode.stateful and self.link is not None:
            self.link.send_timeout_s = 1.0  # a broker that is gone must not hold up the stop
            try:
                self.snapshot(timeout_s=2.0)
            except (StateError, BrokerUnavailable) as exc:
                log.error("%s", exc)

    def _config(self, msg: P.ConfigPush) -> None:
        from pipelogic.worker import config

        config._apply(msg.values, msg.version)
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

    def _virtual_take(self, skip: int, min_count: int, max_count: int) -> list[Any] | None:
        assert self.virtual_in is not None
        return virtual_take(self.virtual_in, skip, min_count, max_count, self._poll_control)

    def _source_take(self) -> list[Any] | bool | None:
        assert self.virtual_in is not None
        request = self.pull_request if self.step.mode.streaming else None
        return source_take(self.virtual_in, request, self._poll_control)

    def _ticks(self, msg: P.Ticks, payload: list[Any]) -> bool:
        """Run a batch of ticks; True when the worker should stop."""
        mode: Mode = self.step.mode
        entries = P.split_values(msg.layout, payload, mode.n_inputs)
        held = self._held
        stop = False
        for tick, per_input, extra in entries:
            virtual: list[Any] | None = None
            if mode.source:
                got = self._source_take()
                if got is None:
                    stop = True
                    break
                if got is False:
                    self.send_stats()  # after the held results
                    self.send(P.Finished(self.epoch))
                    return self._wait_close()
                virtual = got  # type: ignore[assignment]
            elif mode.virtual_input:
                if tick < self.replay_until:
                    virtual = []  # a replay: its virtual messages are gone (docs/semantics.md)
                elif mode.streaming and isinstance(extra, list) and len(extra) == 3:
                    virtual = self._virtual_take(*extra)
                    if virtual is None:
                        stop = True
                        break
                else:
                    assert self.virtual_in is not None
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
                out = self.step.call(inputs, virtual, tick)
                inputs = None  # the user's values may map shared memory: hold none of them past the call
                _faults.point("after-state-update-before-checkpoint")
                if out.virtual_output and tick >= self.replay_until:  # replays were delivered
                    if held.layout and self.vout.would_block(len(out.virtual_output)):
                        self._flush_results()  # done ticks go out before we wait
                    self.vout.emit(out.virtual_output)
                if self.vout.error is not None:
                    raise WorkerError(
                        f"vertex {self.vertex}: the virtual_out callback raised "
                        f"{type(self.vout.error).__name__}: {self.vout.error}"
                    ) from self.vout.error
            except _TICK_ERRORS as exc:
                fatal = self.on_error != "skip" or isinstance(exc, (DecodeError, PullRequestError))
                tb = user_traceback(exc.__cause__) if exc.__cause__ is not None else ""
                self.send(P.Failed(self.epoch, tick, str(exc), tb, fatal))
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
            if mode.source:  # live sources: no batching, every tick goes out at once
                self._flush_results()
            if self._snapshot_due():
                self.snapshot()  # its Sync sends the held results first: the broker holds them
            if self.stop_requested:
                break  # the rest of the batch is unanswered: the broker gives it to the next one
        if len(held) >= self._hold_limit:
            self._flush_results()
        return stop

    def _changed_stats(self) -> dict[str, Any] | None:
        """The worker's counters if they moved since they were last sent (not counting
        ticks, which move every time), else None."""
        counters = self._counters()  # a tuple: this runs before every Results
        if counters == self._sent_stats:
            return None
        self._sent_stats = counters
        return self.stats()

    def _wait_close(self) -> bool:
        while True:
            item = self._next(_POLL_MS)
            if item is not None and isinstance(item[0], P.Close):
                return True
            if item is None and (self.stop_requested or self.lost is not None):
                return True


# The worker's counters besides ``ticks``, as the broker's status shows them.
_COUNTERS = ("virtual_dropped", "nothing_dropped", "virtual_out_lost", "virtual_queued", "virtual_closed")


def main_file() -> str | None:
    """The file of the ``__main__`` module (the component's src/main.py)."""
    main = sys.modules.get("__main__")
    return getattr(main, "__file__", None)
