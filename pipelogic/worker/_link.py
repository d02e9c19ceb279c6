"""A worker's link to its broker: the handshake, the two data sockets and the heartbeat
thread that watches the broker.

The heartbeat thread owns a control socket of its own (zmq sockets are not shared between
threads) and reads the broker's Pongs. It marks the link lost:

- *fenced* (:attr:`BrokerLink.fenced`): this very broker says the epoch was replaced or
  declared dead. The worker stops; its supervisor starts a new one.
- *broker gone*: no Pong for ``liveness`` heartbeat intervals, or a Pong from another
  broker process (the broker restarted). The worker keeps its state and rejoins
  (:meth:`Session.rejoin <pipelogic.worker._session.Session>`), with a new link.

Sends never block for long: a send that the broker does not take is retried in short steps
while the link is not lost, so a dead broker is noticed within the heartbeat bound
rather than after a long send timeout.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from pipelogic import _health, transport
from pipelogic import protocol as P
from pipelogic.errors import BrokerUnavailable, KeyFileMissing, ProtocolError
from pipelogic.transport import ZContext

__all__ = ["BrokerLink", "BrokerLost", "handshake"]

log = logging.getLogger("pipelogic.worker")

_SEND_STEP_MS = 200


class BrokerLost(BrokerUnavailable):
    """The broker went silent or restarted: rejoin (internal to the worker runtime)."""


def handshake(
    ctx: ZContext,
    broker: str,
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
            frames = transport.request(ctx, broker, P.encode(hello), max(0.05, min(attempt_s, left)))
        except KeyFileMissing:
            # In containers the broker makes the keys when it starts: wait for it, as for the
            # broker itself, and say so if it never comes.
            if time.monotonic() + pause >= deadline:
                raise
            frames = None
        if frames is not None:
            msg, _ = P.decode(frames)
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


def instance_id() -> str:
    """This worker's instance id: ``PIPELOGIC_INSTANCE`` (``pipelogic up`` numbers a
    replicated vertex's instances), else host and pid. The broker takes a Hello with the id
    of a live instance for a restart of it (a container keeps its host name and usually its
    pid across restarts), and any other for one more instance of a replicated vertex."""
    return os.environ.get("PIPELOGIC_INSTANCE") or f"{socket.gethostname()}:{os.getpid()}"


def hello_for(
    vertex: str, input_types: list[str], output_types: list[str], join: bool = False, shm: str = ""
) -> P.Hello:
    return P.Hello(
        vertex=vertex,
        instance=instance_id(),
        pid=os.getpid(),
        features=[],
        inputs=len(input_types),
        outputs=len(output_types),
        host=socket.gethostname(),
        types=[input_types, output_types],
        join=join,
        shm=shm,
    )


class BrokerLink:
    """The data sockets and heartbeat of one accepted incarnation (one Welcome)."""

    def __init__(
        self, ctx: ZContext, broker: str, welcome: P.Welcome, vertex: str, stats: Callable[[], dict[str, Any]]
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
        self.ticks = transport.connect(
            ctx,
            zmq.DEALER,
            transport.peer_endpoint(broker, welcome.tick_endpoint),
            routing_id=bytes.fromhex(welcome.tick_identity),
        )
        self.push = transport.connect(ctx, zmq.PUSH, transport.peer_endpoint(broker, welcome.result_endpoint))
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
        deadline = time.monotonic() + self.send_timeout_s
        while True:
            try:
                transport.send(self.push, frames)
                return
            except zmq.Again:
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
            try:
                # Try first: when ticks are flowing, one is usually waiting, and a poll costs
                # more than the receive.
                return P.decode(transport.recv(self.ticks, transport.NOBLOCK))
            except zmq.Again:
                if waited or timeout_ms == 0 or not self.ticks.poll(timeout_ms):
                    return None
                waited = True
            except ProtocolError as exc:
                log.error("vertex %s: dropped a malformed message from the broker: %s", self.vertex, exc)

    def _heartbeat(self) -> None:
        sock = transport.connect(self.ctx, zmq.DEALER, self.broker)
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
                        msg, _ = P.decode(frames[1:])
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
