"""``virtual_in``: the queue between the world (a camera thread) and the worker function's
``virtual_input``, and how a tick takes from it (``virtual_out`` is
:mod:`pipelogic.worker._virtual_out`, re-exported here)."""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pipelogic.errors import VirtualStreamClosed
from pipelogic.pulling import take_shift
from pipelogic.types import InputsPullRequest
from pipelogic.worker._virtual_out import VirtualOutputStream

__all__ = [
    "KEEP",
    "VirtualInputStream",
    "VirtualOutputStream",
    "VirtualStreamClosed",
    "message_bytes",
    "source_take",
    "virtual_take",
]

KEEP = ("all", "latest")
"""What a full virtual queue does with a new message: ``all`` keeps what is queued (a
blocking push waits, a non-blocking one drops the new message); ``latest`` drops the oldest
queued messages instead, so a live camera's newest frame is the next one taken."""

_PACE_S = 0.05  # a source's queue holds about this much of the pipeline's pace (as backend_stub.pacing)
_PROBE_BYTES = 1024 * 1024  # a source's queue's bytes until the pace is measured (as backend_stub.pacing)
_PRIOR_S = 1.0  # where the pace of large messages starts from


class VirtualInputStream:
    """A bounded, thread-safe queue feeding the worker's ``virtual_input`` parameter.

    ``push(*messages, blocking=True)`` waits while the queue is full; with
    ``blocking=False`` it drops what does not fit and counts the drops (``dropped``, shown
    by ``pipelogic status``). With ``keep`` "latest" (``$PIPELOGIC_VIRTUAL_QUEUE_KEEP``,
    pipeline.yml's ``virtual_queue: {keep: latest}``, or :meth:`configure`) a push never
    waits: the oldest queued messages are dropped (and counted) to make room, as a live
    camera wants. ``close()`` ends the stream: a source worker finishes once the queue is
    drained.

    Full means ``maxsize`` messages (``$PIPELOGIC_VIRTUAL_QUEUE_SIZE``, default 1024) or
    ``max_bytes`` of them (``$PIPELOGIC_VIRTUAL_QUEUE_BYTES``, default 64 MiB: about ten
    1080p frames), whichever comes first; an empty queue takes one message however large.
    A message's bytes are its buffers' (``bytes``, arrays, an ``Image``'s pixels, inside
    records and lists), so a camera that pushes frames faster than the pipeline takes them
    holds a bounded amount of memory. A synchronous source's queue (a camera) holds at
    most about 50 ms of the pipeline's pace besides, at least one message: behind a model
    that takes 0.3 s a frame, one frame waits, not ten.
    """

    def __init__(self, maxsize: int | None = None, max_bytes: int | None = None) -> None:
        self.maxsize = maxsize or int(os.environ.get("PIPELOGIC_VIRTUAL_QUEUE_SIZE", "1024"))
        self.max_bytes = max_bytes or int(os.environ.get("PIPELOGIC_VIRTUAL_QUEUE_BYTES", str(64 * 1024 * 1024)))
        keep = os.environ.get("PIPELOGIC_VIRTUAL_QUEUE_KEEP", "all")
        if keep not in KEEP:
            raise ValueError(f"PIPELOGIC_VIRTUAL_QUEUE_KEEP: expected all or latest, got {keep!r}")
        self.keep = keep
        self._q: deque[Any] = deque()
        self._sizes: deque[int] = deque()
        self.nbytes = 0  # of the queued messages
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.pushed = 0
        # Set by the runtime for a synchronous source (a camera): the queue then holds about
        # _PACE_S of the pipeline's pace (at least one message), so a frame pushed behind a
        # slow model waits a few frame times, not the whole bound's worth.
        # None until run() says: the queue then holds what a paced one does before it is
        # measured, so a camera thread started before run() does not fill it with stale frames.
        self.paced: bool | None = None
        self._take_s = 0.0  # seconds per message taken, averaged; 0: not measured
        self._last_take = 0.0

    def configure(self, size: int | None = None, max_bytes: int | None = None, keep: str | None = None) -> None:
        """Set the queue's bounds and what a full one drops (pipeline.yml's ``virtual_queue``
        for the vertex, which the broker sends; or the component's own code)."""
        with self._cond:
            if keep is not None:
                if keep not in KEEP:
                    raise ValueError(f"virtual_in.configure: keep must be all or latest, got {keep!r}")
                self.keep = keep
            if size is not None:
                self.maxsize = int(size)
            if max_bytes is not None:
                self.max_bytes = int(max_bytes)
            self._cond.notify_all()

    def push(self, *messages: Any, blocking: bool = True) -> None:
        with self._cond:
            for m in messages:
                if self._closed:
                    raise VirtualStreamClosed("virtual_in.push() after virtual_in.close()")
                size = message_bytes(m)
                if self._full(size):
                    if self.keep == "latest":
                        while self._q and self._full(size):  # stale frames make way for the new one
                            self._q.popleft()
                            self.nbytes -= self._sizes.popleft()
                            self.dropped += 1
                    elif not blocking:
                        self.dropped += 1
                        continue
                    else:
                        while self._full(size) and not self._closed:
                            self._cond.wait()
                        if self._closed:
                            raise VirtualStreamClosed("virtual_in.push() after virtual_in.close()")
                self._q.append(m)
                self._sizes.append(size)
                self.nbytes += size
                self.pushed += 1
                self._cond.notify_all()

    def bound(self) -> int:
        """How many messages the queue holds now: ``maxsize``, or for a paced source about
        :data:`_PACE_S` of what the pipeline takes (at least 1)."""
        t = self._take_s
        if self.paced is False or not t:
            return self.maxsize
        return max(1, min(self.maxsize, math.ceil(_PACE_S / t)))

    def _full(self, size: int) -> bool:
        if len(self._q) >= self.bound():
            return True
        # Until the pace is known (and before run() says whether it is paced): 1 MiB, so a
        # camera started before run() holds one or two frames, not the byte bound's worth.
        limit = self.max_bytes if self.paced is False or self._take_s else min(self.max_bytes, _PROBE_BYTES)
        return bool(self._q) and self.nbytes + size > limit

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
            largest = 0
            for _ in range(min(max_count, len(self._q))):
                out.append(self._q.popleft())
                size = self._sizes.popleft()
                self.nbytes -= size
                largest = max(largest, size)
            if out and self.paced:
                # The pace at which messages leave: the pipeline's when it is the slower,
                # the camera's when that is (the queue is then empty anyway). A slower take
                # counts at once, faster ones bring it down gradually, from a second for
                # large messages: the first takes of frames come in quick succession while
                # the pipeline fills (a model's buffer, its first tick), and must not open
                # the queue to a burst of frames that then wait behind the slow model.
                now = time.monotonic()
                if self._last_take:
                    sample = (now - self._last_take) / len(out)
                    t = self._take_s or (_PRIOR_S if largest >= _PROBE_BYTES else sample)
                    self._take_s = sample if sample > t else t + 0.3 * (sample - t)
                self._last_take = now
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
