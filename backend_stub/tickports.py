"""The broker's tick ports: one ROUTER socket per worker incarnation, the ticks queued for
it, and what strangers send there.

A tick port sends only to the peer holding its secret routing id (the Welcome's
``tick_identity``): a stranger that connects receives nothing (a PUSH would hand it every
other tick). Nothing should arrive on it (the worker only receives): a peer that sends gets
a one-message queue and is cut off at the first frame over ``TICK_PORT_MAX_FRAME``, and what
does arrive is read, dropped and counted (:meth:`TickPorts.drop_strays`). The send queue is
unbounded: the scheduler's credit bounds what is sent.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from backend_stub.bounds import TICK_PORT_MAX_FRAME
from pipelogic import transport
from pipelogic.transport import ZContext, ZSocket

__all__ = ["MAX_DRAIN", "TickPorts"]

MAX_DRAIN = 256  # messages read from one socket per loop turn, so no peer starves the rest

Stray = Callable[[int, float], None]
"""Called with (epoch, now) for each message a stranger sent to that epoch's tick port."""


class TickPorts:
    """The tick sockets of the live worker incarnations, by epoch, and their outboxes."""

    def __init__(self, ctx: ZContext, listen: str, stray: Stray) -> None:
        self.ctx = ctx
        self.listen = listen
        self._stray = stray
        self.sockets: dict[int, tuple[ZSocket, bytes]] = {}  # epoch -> socket, its worker's routing id
        self.outbox: dict[int, deque[list[Any]]] = {}
        self.waiting: set[int] = set()  # epochs whose outbox is not empty: what a flush visits
        # epoch -> (tick, frames): a tick formed ahead, sent when the worker answers the one before
        self.ahead: dict[int, tuple[int, list[Any]]] = {}
        self.deferred: set[int] = set()  # epochs that answered while nothing could move
        self.released = 0  # ticks held and then sent (what tests and the bench read)

    def open(self, epoch: int, curve: Any = None, domain: str = "") -> tuple[str, bytes]:
        """Bind the tick port of ``epoch``: its endpoint and the routing id its worker must take."""
        token = os.urandom(16)
        sock, endpoint = transport.bind_sibling(
            self.ctx,
            zmq.ROUTER,
            self.listen,
            f"w{epoch}",
            hwm=0,
            curve=curve,
            domain=domain,
            max_frame=TICK_PORT_MAX_FRAME,
            rcvhwm=1,
        )
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a peer not (yet) there fails: retried
        self.sockets[epoch] = (sock, token)
        self.outbox[epoch] = deque()
        return endpoint, token

    def epochs(self) -> list[int]:
        return list(self.sockets)

    def queue(self, epoch: int, frames: list[Any]) -> None:
        """Send ``frames`` to ``epoch`` at the next flush (dropped if the port is closed)."""
        box = self.outbox.get(epoch)
        if box is not None:
            box.append(frames)
            self.waiting.add(epoch)

    def hold(self, epoch: int, tick: int, frames: list[Any]) -> None:
        """Hold ``frames``, tick ``tick`` formed ahead of the credit, until :meth:`release`.
        One tick at a time: one held before goes out first rather than be replaced."""
        if epoch in self.outbox:
            if epoch in self.ahead:
                self.release(epoch)
            self.ahead[epoch] = (tick, frames)

    def release(self, epoch: int) -> None:
        """``epoch`` answered: its held tick goes out now, after what was queued."""
        self.deferred.discard(epoch)
        held = self.ahead.pop(epoch, None)
        if held is not None:
            self.released += 1
            self.queue(epoch, held[1])
            self.flush_one(epoch)

    def defer(self, epoch: int) -> None:
        """``epoch`` answered while nothing new may move (the store cannot commit): its
        held tick goes at :meth:`release_deferred`."""
        if epoch in self.ahead:
            self.deferred.add(epoch)

    def release_deferred(self) -> None:
        for epoch in list(self.deferred):
            self.release(epoch)

    @property
    def pending(self) -> bool:
        """Whether anything waits to go out (a worker has not attached yet)."""
        return bool(self.waiting)

    def flush_one(self, epoch: int) -> None:
        box = self.outbox.get(epoch)
        if not box:
            self.waiting.discard(epoch)
            return
        sock, token = self.sockets[epoch]
        while box:
            try:
                transport.send_to(sock, token, box[0], transport.NOBLOCK)
            except zmq.Again:
                return  # the worker has not attached yet; retry next turn
            box.popleft()
        self.waiting.discard(epoch)

    def flush(self) -> None:
        """Send what waits, for every epoch that has something (cheap when nothing does:
        the loop flushes as soon as ticks are formed, for their latency, and again at the
        end of its turn)."""
        if self.waiting:
            for epoch in list(self.waiting):
                self.flush_one(epoch)

    def drop_strays(self, now: float) -> None:
        """Read and drop what strangers sent to any tick port (at most one message per peer
        waits there), each reported to ``stray``."""
        for epoch, (sock, _token) in self.sockets.items():
            self._drop_strays_of(epoch, sock, now)

    def _drop_strays_of(self, epoch: int, sock: ZSocket, now: float) -> None:
        for _ in range(MAX_DRAIN):
            try:
                sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._stray(epoch, now)

    def close(self, epoch: int, now: float) -> None:
        """Close the tick port of ``epoch`` (what waits for it is dropped)."""
        entry = self.sockets.pop(epoch, None)
        self.outbox.pop(epoch, None)
        self.waiting.discard(epoch)
        self.ahead.pop(epoch, None)  # in the vertex's log: replayed to the next incarnation
        self.deferred.discard(epoch)
        if entry is not None:
            # What a stranger sent since the last periodic check is counted, not lost unseen.
            self._drop_strays_of(epoch, entry[0], now)
            entry[0].close(0)

    def close_all(self, linger_ms: int) -> None:
        for sock, _ in self.sockets.values():
            sock.close(linger=linger_ms)
        self.sockets.clear()
        self.outbox.clear()
        self.waiting.clear()
        self.ahead.clear()
        self.deferred.clear()
