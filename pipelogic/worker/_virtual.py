"""``virtual_in`` and ``virtual_out``: queues between the worker function and the world."""

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
from pipelogic.pulling import take_shift
from pipelogic.types import InputsPullRequest

__all__ = [
    "VirtualInputStream",
    "VirtualOutputStream",
    "VirtualStreamClosed",
    "message_bytes",
    "source_take",
    "virtual_take",
]

log = logging.getLogger("pipelogic.worker")


class VirtualInputStream:
    """A bounded, thread-safe queue feeding the worker's ``virtual_input`` parameter.

    ``push(*messages, blocking=True)`` waits while the queue is full; with
    ``blocking=False`` it drops what does not fit and counts the drops (``dropped``, shown
    by ``pipelogic status``). ``close()`` ends the stream: a source worker finishes once the
    queue is drained.

    Full means ``maxsize`` messages (``$PIPELOGIC_VIRTUAL_QUEUE_SIZE``, default 1024) or
    ``max_bytes`` of them (``$PIPELOGIC_VIRTUAL_QUEUE_BYTES``, default 64 MiB: about ten
    1080p frames), whichever comes first; an empty queue takes one message however large.
    A message's bytes are its buffers' (``bytes``, arrays, an ``Image``'s pixels, inside
    records and lists), so a camera that pushes frames faster than the pipeline takes them
    holds a bounded amount of memory.
    """

    def __init__(self, maxsize: int | None = None, max_bytes: int | None = None) -> None:
        self.maxsize = maxsize or int(os.environ.get("PIPELOGIC_VIRTUAL_QUEUE_SIZE", "1024"))
        self.max_bytes = max_bytes or int(os.environ.get("PIPELOGIC_VIRTUAL_QUEUE_BYTES", str(64 * 1024 * 1024)))
        self._q: deque[Any] = deque()
        self._sizes: deque[int] = deque()
        self.nbytes = 0  # of the queued messages
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.pushed = 0

    def push(self, *messages: Any, blocking: bool = True) -> None:
        with self._cond:
            for m in messages:
                if self._closed:
                    raise VirtualStreamClosed("virtual_in.push() after virtual_in.close()")
                size = message_bytes(m)
                if self._full(size):
                    if not blocking:
                        self.dropped += 1
                        continue
                    while self._full(size) and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        raise VirtualStreamClosed("virtual_in.push() after virtual_in.close()")
                self._q.append(m)
                self._sizes.append(size)
                self.nbytes += size
                self.pushed += 1
                self._cond.notify_all()

    def _full(self, size: int) -> bool:
        return len(self._q) >= self.maxsize or (bool(self._q) and self.nbytes + size > self.max_bytes)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._q)

    # -- runtime side ----------------------------------------------------------------------

    def wait(self, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` messages are queued or the stream is closed; True if so."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._q) >= count or self._closed, timeout_s)

    def take(self, skip: int, max_count: int) -> list[Any]:
        """Drop ``skip`` then take up to ``max_count`` queued messages (never waits)."""
        with self._cond:
            for _ in range(min(skip, len(self._q))):
                self._q.popleft()
                self.nbytes -= self._sizes.popleft()
            out = []
            for _ in range(min(max_count, len(self._q))):
                out.append(self._q.popleft())
                self.nbytes -= self._sizes.popleft()
            self._cond.notify_all()
            return out

    def exhausted(self) -> bool:
        with self._cond:
            return self._closed and not self._q


def message_bytes(m: Any, depth: int = 0) -> int:
    """About how many bytes ``m`` holds: its buffers (``nbytes`` of arrays and memoryviews,
    the length of bytes and strings), looked for inside records, dicts, lists and tuples a
    few levels deep; 64 for anything else."""
    n = getattr(m, "nbytes", None)
    if type(n) is int:
        return n
    if isinstance(m, (bytes, bytearray, str)):
        return len(m)
    if depth < 4:
        if isinstance(m, dict):
            return 64 + sum(message_bytes(v, depth + 1) for v in m.values())
        if isinstance(m, (list, tuple)):
            return 64 + sum(message_bytes(v, depth + 1) for v in m)
    return 64


def virtual_take(
    vin: VirtualInputStream, skip: int, min_count: int, max_count: int, poll: Callable[[], bool]
) -> list[Any] | None:
    """A component's virtual part of a tick: wait for ``skip + min_count`` queued messages
    (the broker chose the option knowing they are there), then take. None if ``poll()``
    says the worker was closed while waiting; a short list only if the queue closed first."""
    while not vin.wait(skip + min_count, 0.05):
        if poll():
            return None
    return vin.take(skip, max_count)


def source_take(
    vin: VirtualInputStream, request: InputsPullRequest | None, poll: Callable[[], bool]
) -> list[Any] | bool | None:
    """A source's tick input: the first option's virtual shift the queue satisfies (one
    message without a pull request). None if closed by the broker while waiting, False when
    the virtual stream is finished (closed, and what is left can never fire)."""
    while True:
        if request is not None:
            for opt in request.options:
                shift = opt.virtual_shift
                t = take_shift(len(vin), shift) if shift is not None else None
                if t is not None and sum(t) > 0:
                    return vin.take(*t)
        elif len(vin) >= 1:
            return vin.take(0, 1)
        if vin.closed:
            return False
        if not vin.wait(len(vin) + 1, 0.05) and poll():
            return None


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
