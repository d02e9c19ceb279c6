"""The worker's side of the shared-memory path (see :mod:`pipelogic.shm`).

:class:`~pipelogic.shm.pool.SlotPool` places this incarnation's large outputs into reusable
slot files; :class:`~pipelogic.shm.reader.SlotReader` maps the slots its inputs name, and
before the worker answers a tick tells the producer which of them the user code still holds
(KEPT), so they are never overwritten under it; :mod:`~pipelogic.shm.files` makes the
handshake's probe. No sockets here.
"""

from __future__ import annotations

import logging
from typing import Any

from pipelogic.errors import SlotGone
from pipelogic.shm import shm_dir
from pipelogic.shm.files import make_probe, remove_probe
from pipelogic.shm.pool import SlotPool
from pipelogic.shm.reader import SlotReader

__all__ = ["SharedMemory", "SlotGone", "SlotPool", "SlotReader", "make_probe", "remove_probe"]

log = logging.getLogger("pipelogic.worker")


class SharedMemory:
    """One incarnation's side of the path: its pool and its reader, both None unless the
    broker's Welcome offered shared memory (it found our probe)."""

    def __init__(self) -> None:
        self.pool: SlotPool | None = None
        self.reader: SlotReader | None = None

    def accept(self, offer: Any, vertex: str) -> None:
        """A new incarnation: drop the previous one's pool, take the Welcome's offer."""
        self.close()
        if not isinstance(offer, dict):
            return
        try:
            self.pool = SlotPool(shm_dir(), str(offer["prefix"]), int(offer["min_bytes"]), int(offer["max_bytes"]))
        except (KeyError, TypeError, ValueError):
            log.warning("vertex %s: ignoring a malformed shared-memory offer %r", vertex, offer)
            return
        self.reader = SlotReader(shm_dir())

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self.pool is not None:
            self.pool.close()
            self.pool = None
