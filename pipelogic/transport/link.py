"""The worker's side of the wire: the :class:`Transport` seam and its zmq implementation.

A worker reaches its broker through a :class:`Transport`: a control request (the Hello
handshake) and, per accepted incarnation, a :class:`Link` that sends to the broker and
receives its ticks. :class:`ZmqTransport` is the real one; :mod:`pipelogic.transport.memory`
has an in-memory one for unit tests of the worker, with a scripted broker.

The zmq link's heartbeat thread owns a control socket of its own (zmq sockets are not
shared between threads) and reads the broker's Pongs. It marks the link lost:

- *fenced* (:attr:`BrokerLink.fenced`): this very broker says the epoch was replaced or
  declared dead. The worker stops; its supervisor starts a new one.
- *broker gone*: no Pong for ``liveness`` heartbeat intervals, or a Pong from another
  broker process (the broker restarted). The worker keeps its state and rejoins, with a new
  link.

Sends never block for long: a send that the broker does not take is retried in short steps
while the link is not lost, so a dead broker is noticed within the heartbeat bound
rather than after a long send timeout.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import zmq

from pipelogic import _health
from pipelogic import protocol as P
from pipelogic.errors import BrokerLost, BrokerUnavailable, KeyFileMissing, ProtocolError
from pipelogic.transport import (
    NOBLOCK,
    ZContext,
    connect,
    peer_endpoint,
    readable,
    recv,
    request,
    send,
    term,
    waiting,
)

__all__ = ["BrokerLink", "Link", "Transport", "ZmqTransport", "handshake"]

log = logging.getLogger("pipelogic.worker")

_SEND_STEP_MS = 200


class Link(Protocol):
    """One accepted incarnation's channel to the broker (one Welcome)."""

    lost: str | None  # why the link is unusable (the broker is gone, or fenced this epoch)
    fenced: bool  # lost because the broker replaced or declared dead this epoch
    send_timeout_s: float

    def send(self, msg: P.Message, payload: Any = ()) -> None:
        """Send to the broker: BrokerLost if the link is lost meanwhile, BrokerUnavailable
        after the send timeout."""

    def send_frames(self, frames: list[Any]) -> None:
        """:meth:`send` of a message already encoded."""

    def recv(self, timeout_ms: int) -> tuple[P.Message, list[Any]] | None:
        """The broker's next message to this worker, or None after ``timeout_ms``."""

    def close(self) -> None: ...


class Transport(Protocol):
    """How a worker reaches its broker."""

    def request(self, frames: list[Any], timeout_s: float) -> list[Any] | None:
        """One control request (a Hello): the reply's frames, or None after ``timeout_s``."""

    def link(self, welcome: P.Welcome, vertex: str, stats: Callable[[], P.WorkerStats]) -> Link:
        """The data channel of the incarnation ``welcome`` accepted; ``stats()`` gives the
        counters its heartbeats carry."""

    def close(self) -> bool:
        """Release everything; False if that did not finish in time (it goes on behind)."""


class ZmqTransport:
    """The worker's transport over zmq: one context for every socket of the process."""

    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.ctx: ZContext = zmq.Context()

    def request(self, frames: list[Any], timeout_s: float) -> list[Any] | None:
        return request(self.ctx, self.broker, frames, timeout_s)

    def link(self, welcome: P.Welcome, vertex: str, stats: Callable[[], P.WorkerStats]) -> BrokerLink:
        return BrokerLink(self.ctx, self.broker, welcome, vertex, stats)

    def close(self) -> bool:
        return term(self.ctx)


def handshake(
    transport: Transport,
    hello: P.Hello,
    timeout_s: float,
    stop: Callable[[], bool] = lambda: False,
    attempt_s: float = 2.0,
    waiting: Callable[[], None] | None = None,
) -> P.Message | None:
    """Say Hello until the broker answers (its Welcome or Refuse), ``timeout_s`` passes or
    ``stop()`` is true (then None). Short attempts, with growing pauses between them when
    they fail fast, so the health beacon beats and a stop request is seen while waiting;
    ``waiting()`` is called once, after the first unanswered attempt."""
    deadline = time.monotonic() + timeout_s
    pause = 0.05
    first = True
    while True:
        left = deadline - time.monotonic()
        started = time.monotonic()
        try:
            frames = transport.request(P.encode(hello), max(0.05, min(attempt_s, left)))
        except KeyFileMissing:
            # In containers the broker makes the keys when it starts: wait for it, as for the
            # broker itself, and say so if it never comes.
            if time.monotonic() + pause >= deadline:
                raise
            frames = None
        if frames is not None:
            msg, _ = P.decode(frames, P.REPLY)
            if not (isinstance(msg, P.Refuse) and msg.code == P.RETRY_LATER):
                return msg
            started = time.monotonic()  # busy: back off below, like a refused connection
        _health.beat()
        if stop() or time.monotonic() >= deadline:
            return None
        if first and waiting is not None:
            waiting()
        first = False
        if time.monotonic() - started < attempt_s / 2:  # refused at once: back off, with jitter
            time.sleep(min(pause * (0.5 + random.random()), max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 2.0)


class BrokerLink:
    """The data sockets and heartbeat of one accepted incarnation (one Welcome)."""

    def __init__(
        self, ctx: ZContext, broker: str, welcome: P.Welcome, vertex: str, stats: Callable[[], P.WorkerStats]
    ) -> None:
        self.ctx = ctx
        self.broker = broker
        self.welcome = welcome
        self.vertex = vertex
        self.epoch = welcome.epoch
        self.instance = str(welcome.settings.get("broker", ""))
        self.liveness = int(welcome.settings.get("liveness", 5))
        self._stats = stats
        self.lost: str | None = None  # why the link is unusable
        self.fenced = False  # lost because this broker replaced or declared dead this epoch
        # A DEALER under the secret routing id the broker addresses this worker's ticks to.
        self.ticks = connect(
            ctx,
            zmq.DEALER,
            peer_endpoint(broker, welcome.tick_endpoint),
            routing_id=bytes.fromhex(welcome.tick_identity),
        )
        self.push = connect(ctx, zmq.PUSH, peer_endpoint(broker, welcome.result_endpoint))
        self.push.setsockopt(zmq.SNDTIMEO, _SEND_STEP_MS)
        self.send_timeout_s = max(10.0, welcome.heartbeat_ms * (self.liveness + 1) / 1000)
        self._hb_stop = threading.Event()
        self._hb = threading.Thread(target=self._heartbeat, name="pipelogic-heartbeat", daemon=True)
        self._hb.start()

    def send(self, msg: P.Message, payload: Any = ()) -> None:
        """Send to the broker. BrokerLost when the link is lost while the broker does not
        take the message; BrokerUnavailable after the send timeout."""
        self.send_frames(P.encode(msg, payload or ()))

    def send_frames(self, frames: list[Any]) -> None:
        """:meth:`send` of a message already encoded."""
        deadline = 0.0  # set at the first refusal: a send that goes asks no clock
        while True:
            try:
                send(self.push, frames)
                return
            except zmq.Again:
                if not deadline:
                    deadline = time.monotonic() + self.send_timeout_s
                if self.lost is not None and not self.fenced:
                    raise BrokerLost(self.lost) from None
                if self.fenced or time.monotonic() >= deadline:
                    raise BrokerUnavailable(
                        self.lost
                        or f"vertex {self.vertex}: the broker at {self.broker} took no message for "
                        f"{self.send_timeout_s:g} s"
                    ) from None

    def recv(self, timeout_ms: int) -> tuple[P.Message, list[Any]] | None:
        """The next message on the tick socket (malformed ones are logged and dropped), or
        None after the timeout."""
        waited = False
        while True:
            # Ask first: when ticks are flowing one is usually waiting, and asking (1 us) is
            # far cheaper than a poll, or than a receive that fails (pyzmq raises zmq.Again).
            if not waiting(self.ticks):
                if waited or timeout_ms == 0 or not readable(self.ticks, timeout_ms):
                    return None
                waited = True
            try:
                return P.decode(recv(self.ticks, NOBLOCK), P.TO_WORKER)
            except zmq.Again:  # EVENTS said yes, yet nothing came: a spurious wake-up
                if waited or timeout_ms == 0:
                    return None
                waited = True
            except ProtocolError as exc:
                log.error("vertex %s: dropped a malformed message from the broker: %s", self.vertex, exc)

    def _heartbeat(self) -> None:
        sock = connect(self.ctx, zmq.DEALER, self.broker)
        interval = self.welcome.heartbeat_ms / 1000.0
        last_pong = time.monotonic()
        try:
            while not self._hb_stop.wait(interval):
                try:
                    sock.send_multipart([b"", *P.encode(P.Heartbeat(self.epoch, self._stats()))], flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass  # broker not reachable right now; silence is judged below
                while sock.poll(0):
                    frames = sock.recv_multipart()
                    try:
                        msg, _ = P.decode(frames[1:], P.REPLY)
                    except ProtocolError:
                        continue
                    if not isinstance(msg, P.Pong) or self.lost is not None:
                        continue
                    last_pong = time.monotonic()
                    if msg.broker and self.instance and msg.broker != self.instance:
                        self.lost = f"vertex {self.vertex}: the broker at {self.broker} restarted"
                    elif not msg.alive:
                        self.fenced = True
                        self.lost = (
                            f"vertex {self.vertex}: this worker (epoch {self.epoch}) was "
                            "replaced or declared dead by the broker"
                        )
                    else:
                        _health.beat()
                silent = time.monotonic() - last_pong
                if silent > interval * self.liveness + interval and self.lost is None:
                    self.lost = f"vertex {self.vertex}: no answer from the broker at {self.broker} for {silent:.1f} s"
        finally:
            sock.close(0)

    def close(self) -> None:
        self._hb_stop.set()
        self._hb.join(5)
        self.ticks.close(0)
        self.push.close(0)
