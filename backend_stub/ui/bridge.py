"""Calls from the web view's threads, carried out on the broker's loop thread.

The scheduler is plain single-threaded code; the view's HTTP threads never touch it. They
queue a call here and wait for its answer; the loop runs what is queued once per turn
(:meth:`LoopBridge.run_pending`), which costs one check of an empty deque while nobody
watches. Control requests go through the same :class:`~backend_stub.control.ControlDesk`
answers as the control socket's (status, taps, config set with its "applied" answer): the
replies come back addressed to a client id no socket peer can have (see :data:`PREFIX`).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["PREFIX", "LoopBridge"]

# A ROUTER names its peers with 5 bytes starting with 0, and a peer may not choose an id
# starting with 0 itself: a longer id with this prefix is never a socket peer's.
PREFIX = b"\x00pipelogic-ui:"


class LoopBridge:
    """The queue between the view's threads and the broker's loop."""

    def __init__(self) -> None:
        self.calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._replies: dict[bytes, Future[list[Any]]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # _replies is written by both sides
        self.closed = False

    def call(self, fn: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        """Run ``fn`` on the loop thread; its result (or its exception). ConnectionError
        once the loop ended; TimeoutError if it does not get to it in time."""
        if self.closed:
            raise ConnectionError("the broker stopped")
        fut: Future[Any] = Future()
        self.calls.append((fn, fut))
        if self.closed:  # closed while it was queued: close() may have run before the append
            self._fail_queued()
        return fut.result(timeout_s)

    def client(self) -> tuple[bytes, Future[list[Any]]]:
        """A client id for one control request, and where its reply's frames will arrive."""
        cid = PREFIX + str(next(self._ids)).encode()
        fut: Future[list[Any]] = Future()
        with self._lock:
            self._replies[cid] = fut
        return cid, fut

    def forget(self, cid: bytes) -> None:
        """A request whose answer nobody waits for any more."""
        with self._lock:
            self._replies.pop(cid, None)

    def deliver(self, cid: bytes, frames: list[Any]) -> None:
        """A reply to ``cid`` (on the loop thread); dropped if its asker gave up."""
        with self._lock:
            fut = self._replies.pop(cid, None)
        if fut is not None and not fut.done():
            fut.set_result([bytes(f) for f in frames])

    def run_pending(self) -> None:
        """Carry out the queued calls (on the loop thread)."""
        while self.calls:
            fn, fut = self.calls.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - the asker gets it, the loop goes on
                fut.set_exception(exc)

    def close(self) -> None:
        """The loop ends: nobody will answer what waits."""
        self.closed = True
        self._fail_queued()
        with self._lock:
            for fut in self._replies.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("the broker stopped"))
            self._replies.clear()

    def _fail_queued(self) -> None:
        while self.calls:
            try:
                _, fut = self.calls.popleft()
            except IndexError:  # emptied by the other side meanwhile
                return
            if fut.set_running_or_notify_cancel():
                fut.set_exception(ConnectionError("the broker stopped"))
