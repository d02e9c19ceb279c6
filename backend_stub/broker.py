"""The broker's socket loop: thin, it only feeds the :class:`Scheduler` and carries out
its actions.

Sockets: a ROUTER on the listen address (control: handshakes, status, config), one PULL
for everything workers send, and one PUSH per worker incarnation (PUSH load-balances, so
a shared one could not address a given worker).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import zmq

from backend_stub.scheduler import Action, Scheduler, Settings
from pipelogic import _health, transport
from pipelogic import protocol as P
from pipelogic.errors import PipelogicError, ProtocolError, ProtocolVersionError
from pipelogic.pipeline import Pipeline

__all__ = ["Broker"]

log = logging.getLogger("backend_stub")

_MAX_DRAIN = 256  # messages read from one socket per loop turn, so no peer starves the rest


class Broker:
    """Serve one pipeline. ``serve()`` blocks; ``start()`` runs it on a thread."""

    def __init__(self, pipeline: Pipeline, listen: str = transport.DEFAULT_BROKER,
                 settings: Settings | None = None, exit_when_done: bool = True) -> None:
        self.pipeline = pipeline
        self.scheduler = Scheduler(pipeline, settings)
        self.listen = listen
        self.exit_when_done = exit_when_done
        self.ctx = zmq.Context()
        self.control, self.endpoint = transport.bind(self.ctx, zmq.ROUTER, listen)
        self.results, self.results_endpoint = transport.bind_sibling(self.ctx, zmq.PULL, listen, "results")
        self.workers: dict[int, tuple[zmq.Socket, str]] = {}
        self.outbox: dict[int, deque[list[Any]]] = {}
        self.malformed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.max_buffered = 0
        self.error: BaseException | None = None

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
        self._stop.set()

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
        sch = self.scheduler
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.results, zmq.POLLIN)
        hb = sch.settings.heartbeat_ms
        try:
            self._run(sch.pump())
            while not self._stop.is_set():
                busy = any(self.outbox.values()) or any(
                    vs.source is not None and vs.source.rate and not vs.finished for vs in sch.vertices.values()
                )
                events = dict(poller.poll(5 if busy else min(hb // 2, 100)))
                now = time.monotonic()
                if self.control in events:
                    self._drain(self.control, self._control, now, copy=True)
                if self.results in events:
                    self._drain(self.results, self._data, now, copy=False)
                self._run(sch.pump(now))
                self._run(sch.expire(now))
                self.max_buffered = max(self.max_buffered, sch.buffered())
                self._flush()
                _health.beat()
                if self.exit_when_done and self.finished:
                    break
        finally:
            self._shutdown()

    def _drain(self, sock: zmq.Socket, handle: Any, now: float, copy: bool) -> None:
        """Handle up to _MAX_DRAIN waiting messages of one socket."""
        for _ in range(_MAX_DRAIN):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=copy)
            except zmq.Again:
                return
            self._run(handle(frames, now))

    def _control(self, frames: list[bytes], now: float) -> list[Action]:
        if len(frames) < 3 or frames[1] != b"":
            self.malformed += 1
            return []
        client = frames[0]
        try:
            msg, _ = P.decode(frames[2:])
        except ProtocolError as exc:
            self.malformed += 1
            log.warning("control: dropped a malformed message: %s", exc)
            if isinstance(exc, ProtocolVersionError):
                return [Action("reply", client=client, frames=P.encode(P.Refuse(str(exc))))]
            return []
        try:
            if isinstance(msg, P.Hello):
                return self._hello(client, msg, now)
            if isinstance(msg, P.Heartbeat):
                alive = self.scheduler.heartbeat(msg.epoch, msg.stats, now)
                return [Action("reply", client=client, frames=P.encode(P.Pong(msg.epoch, alive)))]
            if isinstance(msg, P.StatusRequest):
                return [Action("reply", client=client, frames=P.encode(self.scheduler.status()))]
            if isinstance(msg, P.ConfigSet):
                return self.scheduler.config_set(msg, client, now)
        except PipelogicError as exc:
            log.warning("control: %s failed: %s", msg.KIND, exc)
            return [Action("reply", client=client, frames=P.encode(P.Refuse(str(exc))))]
        self.malformed += 1
        return [Action("reply", client=client, frames=P.encode(P.Refuse(f"{msg.KIND} is not a control request")))]

    def _hello(self, client: bytes, msg: P.Hello, now: float) -> list[Action]:
        result = self.scheduler.hello(msg, now)
        if isinstance(result, P.Refuse):
            log.warning("refused a worker: %s", result.reason)
            return [Action("reply", client=client, frames=P.encode(result))]
        epoch, fields = result
        for old in [e for e in self.workers if e not in self.scheduler.by_epoch]:
            self._drop_worker(old)
        sock, ep = transport.bind_sibling(self.ctx, zmq.PUSH, self.listen, f"w{epoch}", hwm=0)
        self.workers[epoch] = (sock, ep)
        self.outbox[epoch] = deque()
        welcome = P.Welcome(epoch=epoch, tick_endpoint=ep, result_endpoint=self.results_endpoint, **fields)
        log.info("vertex %s connected (pid %d, epoch %d)", msg.vertex, msg.pid, epoch)
        return [Action("reply", client=client, frames=P.encode(welcome))]

    def _data(self, frames: list[Any], now: float) -> list[Action]:
        try:
            msg, payload = P.decode(frames)
            return self.scheduler.on_message(msg, payload, now)
        except ProtocolError as exc:
            self.malformed += 1
            log.warning("data: dropped a malformed message: %s", exc)
        except PipelogicError as exc:
            self.malformed += 1
            log.warning("data: %s", exc)
        except Exception:  # a bug: log it loudly, keep serving the other peers
            self.malformed += 1
            log.exception("data: internal error while handling a message")
        return []

    def _run(self, actions: list[Action]) -> None:
        for a in actions:
            if a.kind == "send":
                box = self.outbox.get(a.epoch)
                if box is not None:
                    box.append(a.frames)
            elif a.kind == "reply":
                try:
                    self.control.send_multipart([a.client, b"", *a.frames], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass  # the client went away
            elif a.kind == "close":
                self._flush_one(a.epoch)
                self._drop_worker(a.epoch)
        self._flush()

    def _flush_one(self, epoch: int) -> None:
        box = self.outbox.get(epoch)
        if not box:
            return
        sock = self.workers[epoch][0]
        while box:
            try:
                sock.send_multipart(box[0], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return  # the worker has not attached yet; retry next turn
            box.popleft()

    def _flush(self) -> None:
        for epoch in list(self.outbox):
            self._flush_one(epoch)

    def _drop_worker(self, epoch: int) -> None:
        entry = self.workers.pop(epoch, None)
        self.outbox.pop(epoch, None)
        if entry is not None:
            entry[0].close(0)

    def _shutdown(self) -> None:
        sch = self.scheduler
        reason = "failed" if sch.failed else ("finished" if sch.done else "broker stopped")
        self._run(sch.close_all(reason))
        deadline = time.monotonic() + 1.0
        while any(self.outbox.values()) and time.monotonic() < deadline:
            self._flush()
            time.sleep(0.01)
        for sock, _ in self.workers.values():
            sock.close(linger=500)
        self.workers.clear()
        for vs in sch.vertices.values():
            if vs.sink is not None:
                vs.sink.close()
        self.control.close(0)
        self.results.close(0)
        self.ctx.term()
