"""An in-memory :class:`~pipelogic.transport.link.Transport`, for unit tests of the worker
(httpx's ``MockTransport`` is the model): no socket, no thread, one process.

A *broker* function plays the broker's part: it is called with each message the worker
sends, decoded (the Hello of the handshake included), and returns what the broker answers,
as messages (with their payload frames) delivered to the worker in order. Every message
goes through the real wire codec both ways, so what a test sees is what a broker would.

::

    def broker(msg, payload):
        if isinstance(msg, P.Hello):
            return [P.Welcome(...)]
        if isinstance(msg, P.Ready):
            return [(P.Ticks(epoch, layout), frames), P.Close("finished")]
        return []

    session = Session(settings, spec, MemoryTransport(broker))
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from pipelogic import protocol as P
from pipelogic.errors import BrokerUnavailable

__all__ = ["Answer", "MemoryLink", "MemoryTransport"]

Answer = P.Message | tuple[P.Message, list[Any]]
"""What the broker function returns per message: a message, or one with its payload frames."""


def _frames(answer: Answer) -> list[Any]:
    msg, payload = answer if isinstance(answer, tuple) else (answer, [])
    if isinstance(msg, P.Ticks):
        return P.encode_ticks(msg.epoch, msg.layout, payload)
    return P.encode(msg, payload)


def _bytes(frames: Iterable[Any]) -> list[bytes]:
    """What a socket would deliver: each frame as bytes (memoryviews and zmq frames too)."""
    return [bytes(getattr(f, "buffer", f)) for f in frames]


class MemoryLink:
    """One incarnation's link: what the worker sent (``sent``, decoded) and what waits for it."""

    def __init__(self, transport: MemoryTransport, welcome: P.Welcome) -> None:
        self.transport = transport
        self.epoch = welcome.epoch
        self.lost: str | None = None
        self.fenced = False
        self.send_timeout_s = 1.0
        self.inbox: deque[list[bytes]] = deque()
        self.closed = False

    def send(self, msg: P.Message, payload: Any = ()) -> None:
        self.send_frames(P.encode(msg, payload or ()))

    def send_frames(self, frames: list[Any]) -> None:
        if self.closed:
            raise BrokerUnavailable("send on a closed link")
        msg, payload = P.decode(_bytes(frames))
        self.transport.sent.append((msg, payload))
        for answer in self.transport.broker(msg, payload) or []:
            self.inbox.append(_bytes(_frames(answer)))

    def recv(self, timeout_ms: int) -> tuple[P.Message, list[Any]] | None:
        if not self.inbox:
            idle = self.transport.idle
            if idle is None or timeout_ms == 0:
                return None
            for answer in idle() or []:  # the test's broker may act while the worker waits
                self.inbox.append(_bytes(_frames(answer)))
            if not self.inbox:
                return None
        return P.decode(self.inbox.popleft())

    def deliver(self, answer: Answer) -> None:
        """Queue a message for the worker from outside the broker function."""
        self.inbox.append(_bytes(_frames(answer)))

    def close(self) -> None:
        self.closed = True


class MemoryTransport:
    """A transport whose broker is the function ``broker(msg, payload) -> [answers]``.
    ``idle()``, if given, is asked for answers when the worker waits on an empty inbox (the
    broker's own initiative: a config push, a close); returning nothing then means no
    message within the wait. ``sent`` lists every message the worker sent, in order;
    ``links`` every link opened (one per incarnation)."""

    def __init__(
        self,
        broker: Callable[[P.Message, list[Any]], Iterable[Answer] | None],
        idle: Callable[[], Iterable[Answer] | None] | None = None,
    ) -> None:
        self.broker = broker
        self.idle = idle
        self.sent: list[tuple[P.Message, list[Any]]] = []
        self.links: list[MemoryLink] = []
        self.closed = False

    def request(self, frames: list[Any], timeout_s: float) -> list[Any] | None:
        msg, payload = P.decode(_bytes(frames))
        self.sent.append((msg, payload))
        answers = list(self.broker(msg, payload) or [])
        return _bytes(_frames(answers[0])) if answers else None

    def link(self, welcome: P.Welcome, vertex: str, stats: Callable[[], P.WorkerStats]) -> MemoryLink:
        link = MemoryLink(self, welcome)
        self.links.append(link)
        return link

    def close(self) -> bool:
        self.closed = True
        return True
