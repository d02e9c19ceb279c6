"""``virtual_out``: the queue between the worker function's virtual outputs and the
callback that delivers them (``virtual_in`` is :mod:`pipelogic.worker._virtual`)."""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pipelogic.errors import VirtualStreamClosed

__all__ = ["VirtualOutputStream"]

log = logging.getLogger("pipelogic.worker")

_STOP = object()


class VirtualOutputStream:
    """Hands each ``virtual_output`` item, in order, to the ``set_on_push`` callback on a
    runtime-managed thread.

    With no callback registered, returned items are kept (the newest ``queue_size``) for a
    callback registered later; older ones, and those still unclaimed at the end, are a
    counted loss with one warning, not a failure.

    A callback taking one argument gets the item. A callback taking two gets
    ``(item, tag)`` and opts into acknowledgements: ``tag`` is the item's number in this
    worker process (0, 1, 2, ... in emission order), to give back with ``ack(tag)``. At most
    ``max_unacked`` (``$PIPELOGIC_VIRTUAL_OUT_MAX_UNACKED``, default 16) items are then
    queued or handed out and not yet acknowledged; the worker's next tick waits until the
    sink catches up, so it stops taking ticks and the broker stops sending them
    (backpressure). An exception raised by the callback fails the worker with that
    exception as the cause; it is never swallowed.

    At the end of ``run()`` every item must be delivered (and acknowledged, with tags):
    the worker waits up to ``$PIPELOGIC_VIRTUAL_OUT_DRAIN_S`` seconds (default 60) and then
    fails, naming how many were not; with ``PIPELOGIC_VIRTUAL_OUT_ON_TIMEOUT=lose`` what is
    left is instead a counted loss (``lost``), shown by ``status`` and ``up``.
    """

    def __init__(self, max_unacked: int | None = None, queue_size: int = 1024) -> None:
        self.max_unacked = max_unacked or int(os.environ.get("PIPELOGIC_VIRTUAL_OUT_MAX_UNACKED", "16"))
        self.queue_size = queue_size
        self._callback: Callable[..., Any] | None = None
        self._with_tag = False
        self._q: deque[Any] = deque()
        self._cond = threading.Condition()
        self._unacked: set[int] = set()
        self._next_tag = 0
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.error: BaseException | None = None
        self.delivered = 0
        self.lost = 0  # items given up at the end (only with a drain timeout the user set)

    def set_on_push(self, callback: Callable[..., Any]) -> None:
        """Register the callable invoked for each virtual-output item."""
        if not callable(callback):
            raise TypeError(f"set_on_push expects a callable, got {type(callback).__name__}")
        try:
            params = [
                p
                for p in inspect.signature(callback).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            ]
            self._with_tag = len(params) >= 2
        except (TypeError, ValueError):
            self._with_tag = False
        with self._cond:
            self._callback = callback
            queued = bool(self._q)
        if queued:  # items kept before a callback existed: hand them over now
            self._start()

    def ack(self, tag: int) -> None:
        """Acknowledge the item handed out with ``tag`` (two-argument callbacks only)."""
        with self._cond:
            self._unacked.discard(tag)
            self._cond.notify_all()

    def stop(self) -> None:
        """No more virtual-output items will be produced; queued ones are still delivered."""
        with self._cond:
            self._stopped = True
            self._q.append(_STOP)
            self._cond.notify_all()

    # -- runtime side ----------------------------------------------------------------------

    def emit(self, items: list[Any]) -> None:
        """Queue items for the callback (blocks while the queue is full)."""
        if not items:
            return
        if self._stopped:
            raise VirtualStreamClosed("virtual_output items returned after virtual_out.stop()")
        if self._callback is None:
            self._keep_unclaimed(items)
            return
        self._start()
        with self._cond:
            for item in items:
                self._cond.wait_for(lambda: self._outstanding() < self._bound() or self.error is not None)
                if self.error is not None:
                    return
                self._q.append(item)
                self._cond.notify_all()

    def _keep_unclaimed(self, items: list[Any]) -> None:
        """No callback yet: the queue keeps the newest ``queue_size`` items for one
        registered later (the API page: the queue *can* be drained by a callback); older
        ones are dropped and counted as lost, with one warning."""
        with self._cond:
            self._q.extend(items)
            over = len(self._q) - self.queue_size
            for _ in range(max(0, over)):
                self._q.popleft()
            if over > 0:
                if not self.lost:
                    log.warning(
                        "the worker returns virtual_output items and no callback is registered with "
                        "virtual_out.set_on_push(): the newest %d are kept for one registered later, "
                        "older ones are dropped and counted as lost",
                        self.queue_size,
                    )
                self.lost += over

    def unclaimed(self) -> int:
        """Items queued while no callback was ever registered."""
        with self._cond:
            return len(self._q) if self._callback is None else 0

    def would_block(self, n: int) -> bool:
        """Whether emitting ``n`` items now would wait for the callback (or its acks)."""
        with self._cond:
            return self._callback is not None and self._outstanding() + n > self._bound()

    def _bound(self) -> int:
        return self.max_unacked if self._with_tag else self.queue_size

    def _outstanding(self) -> int:
        """Items queued, plus (with acknowledgements) handed out and not acknowledged."""
        return len(self._q) + (len(self._unacked) if self._with_tag else 0)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pipelogic-virtual-out", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        assert self._callback is not None
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._q))
                item = self._q.popleft()
                self._cond.notify_all()
                if item is _STOP:
                    return
                if self._with_tag:
                    self._cond.wait_for(lambda: len(self._unacked) < self.max_unacked)
                    tag = self._next_tag
                    self._next_tag += 1
                    self._unacked.add(tag)
            try:
                if self._with_tag:
                    self._callback(item, tag)
                else:
                    self._callback(item)
                self.delivered += 1
            except BaseException as exc:  # noqa: BLE001 - reported to the main thread
                log.error("virtual_out callback raised: %r", exc)
                with self._cond:
                    self.error = exc
                    self._q.clear()
                    self._cond.notify_all()
                return

    def drain(self, timeout_s: float = 60.0) -> int:
        """At the end of run: wait until every item was handed to the callback and (with
        acknowledgements) acknowledged, or ``timeout_s`` passed; return how many were not."""
        if self._thread is None:
            return 0
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._q.append(_STOP)
            self._cond.notify_all()
        self._thread.join(timeout_s)
        with self._cond:
            if self._with_tag and not self._thread.is_alive():
                self._cond.wait_for(
                    lambda: not self._unacked or self.error is not None, max(0.0, deadline - time.monotonic())
                )
            left = sum(1 for x in self._q if x is not _STOP) + (len(self._unacked) if self._with_tag else 0)
            if self._thread.is_alive():
                left += 1  # the item the callback is still holding
        return left
