"""The broker's socket loop: thin, it only feeds the :class:`Scheduler` and carries out
its actions.

Sockets: a ROUTER on the listen address (control: handshakes, status, config), one PULL
for everything workers send, and one ROUTER per worker incarnation for its ticks, which
sends only to the peer with the secret routing id its Welcome named (``ROUTER_MANDATORY``:
a stranger connecting to that port receives nothing).

What it delegates: the scheduling to :class:`Scheduler`, control requests to
:class:`~backend_stub.control.ControlDesk`, the tick ports to
:class:`~backend_stub.tickports.TickPorts`, the recovery store's group commit to
:class:`~backend_stub.committer.Committer`, shared memory to
:class:`~backend_stub.shm.SlotRegistry`. What is left here is what touches more than one of
them: starting them up in order (keys, sockets, store, shared memory), the handshake's new
tick port, and the checks of a data message's key.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from backend_stub import replicas
from backend_stub.auth import KeyRing, start_authenticator, worker_domain
from backend_stub.bounds import (
    MAX_MESSAGE_BYTES,
    give_back,
    total,
)
from backend_stub.committer import Committer
from backend_stub.control import ControlDesk
from backend_stub.gcpolicy import few_full_collections
from backend_stub.metrics import MetricsServer
from backend_stub.model import Action, Reply, Send, Settings
from backend_stub.observe import Observer
from backend_stub.shm import SlotRegistry
from backend_stub.store import UNSAFE, RecoveryStore, open_run
from backend_stub.tickports import MAX_DRAIN, TickPorts
from backend_stub.ui.bridge import PREFIX as UI_CLIENT
from backend_stub.ui.bridge import LoopBridge
from backend_stub.vertices import SinkVertex, SourceVertex
from pipelogic import _health, transport
from pipelogic import protocol as P
from pipelogic.errors import PipelogicError, ProtocolError, SlotLost
from pipelogic.pipeline import Pipeline
from pipelogic.shm import enabled as shm_enabled
from pipelogic.transport import ZSocket

__all__ = ["Broker"]

log = logging.getLogger("backend_stub")

LINGER_S = 10.0  # how long a finished run waits for late instances of a replicated vertex


def _loopback(listen: str) -> bool:
    """Whether ``listen`` is reachable from this host only (loopback tcp, ipc, inproc)."""
    if not listen.startswith("tcp://"):
        return True
    host = listen[6:].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


class Broker:
    """Serve one pipeline. ``serve()`` blocks; ``start()`` runs it on a thread."""

    def __init__(
        self,
        pipeline: Pipeline,
        listen: str = transport.DEFAULT_BROKER,
        settings: Settings | None = None,
        exit_when_done: bool = True,
        state_dir: Path | None = None,
        fresh: bool = False,
        commit_ms: int = 25,
        keys: Path | KeyRing | None = None,
    ) -> None:
        """``state_dir``: keep the run in a recovery store there and resume an unfinished run
        of the same pipeline (StateError if the store is locked or holds a changed
        pipeline's run); None keeps everything in memory. ``keys``: a key folder
        (``pipelogic keys``): every socket then uses CurveZMQ, admits only its keys, and
        each message is checked against what its key may do (docs/security.md)."""
        self.pipeline = pipeline
        settings = settings or Settings.from_pipeline(pipeline)
        self.store: RecoveryStore | None = None
        self.observer = Observer()
        self.instance = uuid.uuid4().hex[:12]  # tells workers that a restarted broker is another one
        self.listen = listen
        self.exit_when_done = exit_when_done
        self.committer: Committer | None = None  # with a recovery store: its group commit
        self.ctx = zmq.Context()
        self.keys: KeyRing | None = None
        self.auth: ThreadAuthenticator | None = None
        self.epoch_keys: dict[int, bytes] = {}  # the key that registered each live incarnation
        try:
            if keys is not None:
                self.keys = keys if isinstance(keys, KeyRing) else KeyRing(keys, log)
                log.info(
                    "CurveZMQ on: %d worker key(s), %d operator key(s) from %s",
                    len(self.keys.workers),
                    len(self.keys.operators),
                    self.keys.folder,
                )
                self.auth = start_authenticator(self.ctx, self.keys)
            curve = self.keys.server if self.keys is not None else None
            # Control messages are headers only: a larger frame disconnects its sender before
            # the broker holds it (the data socket takes frames up to MAX_FRAME_BYTES).
            self.control, self.endpoint = transport.bind(
                self.ctx, zmq.ROUTER, listen, curve=curve, max_frame=P.MAX_HEADER_BYTES
            )
            self.results, self.results_endpoint = transport.bind_sibling(
                self.ctx, zmq.PULL, listen, "results", curve=curve
            )
            # Only once it listens is the run recorded (and are its sink files opened): a
            # broker that cannot bind leaves no unfinished run behind to be "resumed".
            self.scheduler, self.store = open_run(pipeline, settings, state_dir, fresh, log.info)
            if self.store is not None:
                self.committer = Committer(self.store, self.scheduler, commit_ms / 1000, self._carry_out)
        except BaseException:
            if self.auth is not None:
                self.auth.stop()
            self.ctx.destroy(0)
            if self.store is not None:
                self.store.close()
            raise
        self.scheduler.broker_instance = self.instance
        if self.keys is None and not _loopback(listen):
            log.warning(
                "listening on %s without keys: anyone who can reach it can register as a vertex, take its "
                "inputs and forge its results; `pipelogic keys` and --keys turn on CurveZMQ "
                "(docs/security.md)",
                listen,
            )
        self._next_key_check = 0.0
        self._next_stray_check = 0.0
        self._dropped_bytes = 0  # of messages refused for their size, to give back (see _drain)
        self.desk = ControlDesk(
            self.scheduler, self.keys, self.epoch_keys, self.instance, self.status, self._hello, self._drop
        )
        self.ports = TickPorts(self.ctx, self.listen, self._stray)
        # A plain flag, not a threading.Event: stop() runs in signal handlers, and Event.set
        # takes a lock that a second signal arriving inside it would wait for forever.
        self._stopping = False
        self._done_at: float | None = None
        self._thread: threading.Thread | None = None
        self.max_buffered = 0
        self.error: BaseException | None = None
        self.metrics: MetricsServer | None = None  # set by the caller that serves them
        self.ui: LoopBridge | None = None  # the web view's calls, when it is served (backend_stub.ui)
        # The shared-memory path (docs/protocol.md). Under keys only for pools the kernel
        # keeps to their producer, its group and the broker (never 0666 files).
        self.slots: SlotRegistry | None = None
        if shm_enabled():
            self.slots = SlotRegistry(self.scheduler.run, secure=self.keys is not None)
            # Sweeps an earlier broker's pools of this run (its values were spilled to the
            # store) and those of runs whose broker was killed and never came back.
            if self.slots.claim():
                self.scheduler.adopt = self.slots.adopt
            else:
                self.slots = None
        self._next_reap = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Broker:
        self._thread = threading.Thread(target=self._serve_catching, name="pipelogic-broker", daemon=True)
        self._thread.start()
        return self

    def _serve_catching(self) -> None:
        try:
            self.serve()
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc

    def stop(self) -> None:
        """Stop serving after the current loop turn. Safe from any thread and from a signal
        handler (it takes no lock)."""
        self._stopping = True

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the loop to end; True if it did. Re-raises a crash of the loop."""
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                return False
        if self.error is not None:
            raise self.error
        return True

    @property
    def finished(self) -> bool:
        return self.scheduler.done or self.scheduler.failed is not None

    # -- the loop --------------------------------------------------------------------------

    def serve(self) -> None:
        with few_full_collections():
            self._serve()

    def _serve(self) -> None:
        sch = self.scheduler
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.results, zmq.POLLIN)
        hb = sch.settings.heartbeat_ms
        try:
            self._run(sch.pump())
            while not self._stopping:
                busy = self.ports.pending or any(
                    isinstance(vs, SourceVertex) and vs.source.rate and not vs.finished for vs in sch.vertices.values()
                )
                events = dict(poller.poll(5 if busy else min(hb // 2, 100)))
                now = time.monotonic()
                # With keys, frames stay zmq.Frames: they carry the ZAP handler's User-Id.
                if self.control in events:
                    self._drain(self.control, self.desk.handle, now, "frames")
                if self.ui is not None and self.ui.calls:
                    self.ui.run_pending()
                if self.results in events:
                    self._drain(self.results, self._data, now, "frames" if self.keys else "hot")
                if self.committer is None or not self.committer.blocked:  # else nothing new moves
                    if self.ports.deferred:  # held ticks whose Results came while the store was blocked
                        self.ports.release_deferred()
                    if self.results in events:
                        # Ticks first: what answered results made room for goes out before
                        # the sources refill and the sinks write (the latency of a tick).
                        self._run(sch.pump_workers())
                        self.ports.flush()
                    self._run(sch.pump(now))
                    self.ports.flush()  # the ticks it formed go out before the chores below
                self._run(sch.expire(now))
                self.max_buffered = max(self.max_buffered, sch.buffered())
                self.observer.sample(sch.vertices, now)
                if sch.taps.rings:
                    sch.taps.expire(now)
                if self.slots is not None and now >= self._next_reap:
                    self._next_reap = now + 0.5
                    self.slots.reap(sch.by_epoch.__contains__)
                if now >= self._next_stray_check:
                    self._next_stray_check = now + 1.0
                    self.ports.drop_strays(now)
                if self.keys is not None and now >= self._next_key_check:
                    self._next_key_check = now + 1.0
                    self._revoke(self.keys.reload())
                if self.metrics is not None:
                    self.metrics.publish(self.status, now)
                if self.committer is not None:
                    self.committer.commit(now)
                self.ports.flush()
                _health.beat()
                if self.exit_when_done and self.finished and not self._lingering(now):
                    break
        finally:
            self._shutdown()

    def _lingering(self, now: float) -> bool:
        """Done, but a replicated vertex may still hear from an instance that started late
        or is closing: serve up to LINGER_S more so it is told the run finished (and exits
        0) rather than left waiting for a broker that is gone."""
        sch = self.scheduler
        if sch.failed is not None:
            return False
        if self._done_at is None:
            self._done_at = now
        return now - self._done_at < LINGER_S and any(replicas.expecting(vs) for vs in sch.vertices.values())

    def status(self) -> P.StatusReply:
        sch = self.scheduler
        bound = sch.settings.heartbeat_ms * sch.settings.liveness / 1000
        st = self.observer.decorate(sch.status(), time.monotonic(), bound, sch.vertices)
        store = self.store
        start = sch.incarnation - sch.run_start + 1 if sch.run_start else 0  # this broker's start, in this run
        broker = P.BrokerInfo(
            pid=os.getpid(),
            instance=self.instance,
            start=start,
            store=str(store.dir) if store is not None else None,
            commits=store.commits if store is not None else 0,
            store_error=self.committer.error if self.committer is not None else None,
            refused=dict(sch.refusals.counts),
            shm=self.slots.stats() if self.slots is not None else None,
        )
        return dataclasses.replace(st, broker=broker)

    def _stray(self, epoch: int, now: float) -> None:
        """A message sent to the tick port of ``epoch``: counted as refused from that port."""
        vs = self.scheduler.by_epoch.get(epoch)
        self.scheduler.refusals.refuse(
            f"tick port of {vs.name if vs is not None else epoch}",
            "a message sent to a tick socket (only the broker sends there)",
            now,
        )

    def _drain(self, sock: ZSocket, handle: Any, now: float, how: str) -> None:
        """Handle up to MAX_DRAIN waiting messages of one socket. ``how``: ``bytes`` (every
        frame copied), ``frames`` (every frame a zmq.Frame), ``hot`` (the header as bytes,
        payload frames as zmq.Frames forwarded without a copy)."""
        for i in range(MAX_DRAIN):
            try:
                if how == "hot":
                    # The poll said the first one is here; after it, ask before receiving.
                    if i and not transport.waiting(sock):
                        return
                    frames = transport.recv(sock, transport.NOBLOCK)
                else:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=how == "bytes")
            except zmq.Again:
                return
            if self.committer is not None:
                self.committer.events += 1
            actions = handle(frames, now)
            del frames  # the last reference: a message the handler dropped is freed here...
            if self._dropped_bytes:  # ...so its memory can be handed back now
                give_back(self._dropped_bytes)
                self._dropped_bytes = 0
            self._run(actions)

    def _drop(self, size: int) -> None:
        self._dropped_bytes += size

    def _carry_out(self, held: list[Action]) -> None:
        """The durable actions a commit held back, now that the store has them."""
        self._run(held, committed=True)
        self.ports.flush()

    @property
    def malformed(self) -> int:
        """Messages refused so far (per peer: ``scheduler.refusals.counts``)."""
        return self.scheduler.refusals.total

    def _registered(self, user: bytes | None, epoch: Any) -> bool:
        """Whether the key ``user`` registered the live incarnation ``epoch`` (with keys)."""
        return user is not None and type(epoch) is int and self.epoch_keys.get(epoch) == user

    def _peer(self, msg: P.Message | None, user: bytes | None = None) -> str:
        """Who sent a data message: with keys, the key that sent it unless that key
        registered the epoch it names (a forger is counted under its own key, not under its
        victim); else the vertex of a live epoch, else unknown."""
        epoch = getattr(msg, "epoch", None)
        if self.keys is not None and not self._registered(user, epoch):
            return self.keys.name(user)
        vs = self.scheduler.by_epoch.get(epoch) if type(epoch) is int else None
        return vs.name if vs is not None else "unknown"

    def _revoke(self, gone: set[bytes]) -> None:
        """Keys deleted from the key folder: drop every incarnation they registered."""
        assert self.keys is not None
        for epoch, key in list(self.epoch_keys.items()):
            if key in gone:
                vs = self.scheduler.by_epoch.get(epoch)
                log.warning(
                    "keys: a key was revoked; disconnecting %s (epoch %d)",
                    f"vertex {vs.name}" if vs is not None else "a worker",
                    epoch,
                )
                self._run(self.scheduler.disconnect(epoch))
                self._drop_worker(epoch)

    def _hello(self, client: bytes, msg: P.Hello, now: float, user: bytes | None = None) -> list[Action]:
        result = self.scheduler.hello(msg, now)
        if isinstance(result, P.Refuse):
            log.warning("refused a worker: %s", result.reason)
            return [Reply(client, P.encode(result))]
        epoch, fields = result
        for old in [e for e in self.ports.epochs() if e not in self.scheduler.by_epoch]:
            self._drop_worker(old)
        curve = None
        if self.keys is not None and self.auth is not None and user is not None:
            # This incarnation's tick socket admits only the key that registered it.
            self.epoch_keys[epoch] = user
            self.keys.admit_tick_socket(epoch, user)
            self.auth.configure_curve_callback(worker_domain(epoch), credentials_provider=self.keys)
            curve = self.keys.server
        ep, token = self.ports.open(epoch, curve, worker_domain(epoch))  # see backend_stub.tickports
        access = self.slots.probe(msg.shm) if self.slots is not None else None
        if access is not None:
            assert self.slots is not None
            fields["settings"] = {**fields["settings"], "shm": self.slots.register(epoch, access, msg.groups)}
        welcome = P.Welcome(
            epoch=epoch, tick_endpoint=ep, result_endpoint=self.results_endpoint, tick_identity=token.hex(), **fields
        )
        log.info("vertex %s connected (pid %d, epoch %d)", msg.vertex, msg.pid, epoch)
        return [Reply(client, P.encode(welcome))]

    def _data(self, frames: list[Any], now: float) -> list[Action]:
        msg: P.Message | None = None
        user: bytes | None = None
        try:
            if self.keys is not None:
                user = (frames[0].get("User-Id") or "").encode() or None
            if len(frames) > 1:  # payload frames: bound the whole message, not only each frame
                size = total(frames)
                if size > MAX_MESSAGE_BYTES:
                    self._dropped_bytes += size
                    raise ProtocolError(
                        f"a message of {size:,} bytes (at most {MAX_MESSAGE_BYTES:,}: PIPELOGIC_MAX_FRAME_BYTES)"
                    )
            msg, payload = P.decode(frames, P.TO_BROKER)
            if self.keys is not None:
                epoch = getattr(msg, "epoch", None)
                if not self._registered(user, epoch):
                    raise ProtocolError(
                        f"{msg.KIND} for epoch {epoch} from {self.keys.name(user)}, which did not register it"
                    )
            if self.ports.ahead and type(msg) is P.Results:
                # The tick formed ahead for this worker goes before its results are applied:
                # they free its credit, and the worker would otherwise idle meanwhile. (A
                # malformed Results then costs one tick of credit, never a tick.)
                if self.committer is None or not self.committer.blocked:
                    self.ports.release(msg.epoch)
                else:
                    self.ports.defer(msg.epoch)
            # The loop pumps once after draining the socket, not once per message.
            return self.scheduler.on_message(msg, payload, now, pump=False)
        except PipelogicError as exc:  # malformed, or well-formed but impossible: dropped, counted
            self.scheduler.refusals.refuse(self._peer(msg, user), f"data: {exc}", now)
        except Exception:  # noqa: BLE001 - a bug: refuse() logs its traceback; keep serving the other peers
            self.scheduler.refusals.refuse(
                self._peer(msg, user), "data: internal error while handling a message", now, bug=True
            )
        return []

    def _run(self, actions: list[Action], committed: bool = False) -> None:
        for a in actions:
            if a.durable and self.committer is not None and not committed and not UNSAFE:
                self.committer.held.append(a)
            elif isinstance(a, Send):
                # Slots reach a worker that can map them as descriptors, any other as the
                # bytes themselves.
                frames = a.frames if self.slots is None or not self.slots.holding else self._resolved(a.frames, a.epoch)
                if a.ahead >= 0:
                    self.ports.hold(a.epoch, a.ahead, frames)
                else:
                    self.ports.queue(a.epoch, frames)
            elif isinstance(a, Reply):
                frames = a.frames if self.slots is None or not self.slots.holding else self._resolved(a.frames)
                if self.ui is not None and a.client.startswith(UI_CLIENT):
                    self.ui.deliver(a.client, frames)
                    continue
                try:
                    self.control.send_multipart([a.client, b"", *frames], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass  # the client went away
            else:
                self.ports.flush_one(a.epoch)
                self._drop_worker(a.epoch)
        # Sends go out at the end of the loop turn (or of the commit), once for all of them.

    def carry_out(self, actions: list[Action]) -> None:
        """Carry out actions made outside the loop's own handlers (on the loop thread: the
        web view's requests). Sends go out at the end of the loop turn."""
        self._run(actions)

    def _resolved(self, frames: list[Any], epoch: int | None = None) -> list[Any]:
        assert self.slots is not None
        try:
            return self.slots.resolve(frames) if epoch is None else self.slots.resolve_for(epoch, frames)
        except SlotLost as exc:
            self.scheduler._fail(str(exc))
            return frames

    def _drop_worker(self, epoch: int) -> None:
        self.ports.close(epoch, time.monotonic())
        if self.keys is not None and self.auth is not None:
            self.epoch_keys.pop(epoch, None)
            self.keys.forget_tick_socket(epoch)
            self.auth.credentials_providers.pop(worker_domain(epoch), None)

    def _shutdown(self) -> None:
        sch = self.scheduler
        if self.metrics is not None:
            self.metrics.publish(self.status, time.monotonic(), force=True)
        if self.store is not None:
            try:
                assert self.committer is not None
                if self.committer.commit(time.monotonic(), final=True) and sch.done:
                    self.store.finish()
            except (OSError, sqlite3.Error) as exc:
                log.error("broker: the last commit failed (%s); a restart resumes from the one before", exc)
            self.store.close()
        reason = "failed" if sch.failed else ("finished" if sch.done else "broker stopped")
        self._run(sch.close_all(reason))
        deadline = time.monotonic() + 1.0
        while self.ports.pending and time.monotonic() < deadline:
            self.ports.flush()
            time.sleep(0.01)
        self.ports.close_all(linger_ms=500)
        for vs in sch.vertices.values():
            if isinstance(vs, SinkVertex):
                vs.sink.close()
        if self.ui is not None:
            self.ui.close()
        self.control.close(0)
        self.results.close(0)
        if self.auth is not None:
            self.auth.stop()
        if self.slots is not None:
            self.slots.close()
        self.ctx.term()
