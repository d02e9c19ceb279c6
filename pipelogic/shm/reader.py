"""A worker's reader of the slots its inputs name (mapped read-only), and the KEPT marks
that keep a producer from overwriting a slot the user code still holds."""

from __future__ import annotations

import logging
import mmap
import os
import stat
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pipelogic.errors import SlotGone
from pipelogic.shm import (
    CTL_SLOTS,
    KEPT,
    MAGIC,
    Descriptor,
    ctl_name,
    decode_descriptor,
)
from pipelogic.shm.files import OPEN_FLAGS

__all__ = ["SlotReader"]

log = logging.getLogger("pipelogic.worker")


class SlotReader:
    """Maps the slots named by input descriptors (read-only, shared). The user function
    gets a memoryview of the mapping, as it would get one of a received frame. Mappings
    are kept for the next value in the same slot (a fresh one costs a page fault per page
    read), and remade when the slot's file was replaced (another inode).

    :meth:`settle` runs before the worker answers: a mapping that anything but this reader
    still refers to is held by user code (a frame kept in state, say), so its slot is marked
    KEPT, and the reader lets that mapping go rather than hand it out again."""

    _CACHED = 32

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.pending: list[Descriptor] = []
        self._maps: OrderedDict[str, tuple[int, mmap.mmap]] = OrderedDict()  # slot name -> (inode, mapping)
        self._ctls: dict[str, mmap.mmap] = {}
        self.kept = 0

    def resolve(self, frame: Any) -> Any:
        buf = getattr(frame, "buffer", frame)
        if len(buf) > 128 or bytes(buf[:8]) != MAGIC:
            return buf
        d = decode_descriptor(buf)
        name = d.name
        try:
            st = os.stat(self.dir / name, follow_symlinks=False)
        except FileNotFoundError:
            raise SlotGone(f"shared-memory slot {name} is gone: the broker that sent it has restarted") from None
        entry = self._maps.get(name)
        if entry is None or entry[0] != st.st_ino or len(entry[1]) < d.length:
            if entry is not None:
                self._forget(name)
            entry = (st.st_ino, self._map(d))
            self._maps[name] = entry
            if len(self._maps) > self._CACHED:
                self._forget(next(iter(self._maps)))
        else:
            self._maps.move_to_end(name)
        self.pending.append(d)
        return memoryview(entry[1])[: d.length]

    def _map(self, d: Descriptor) -> mmap.mmap:
        fd = os.open(self.dir / d.name, os.O_RDONLY | OPEN_FLAGS)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size < d.length:
                raise ValueError(f"shared-memory slot {d.name} has {st.st_size} bytes, the descriptor says {d.length}")
            return mmap.mmap(fd, st.st_size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)

    def _forget(self, name: str) -> None:
        _ino, mm = self._maps.pop(name)
        if sys.getrefcount(mm) <= 2:  # (this local and the argument) no view of it is left
            mm.close()

    def settle(self) -> None:
        if not self.pending:
            return
        for d in self.pending:
            entry = self._maps.get(d.name)
            # Held: anything but the cache's tuple (and the argument) refers to the mapping.
            if entry is not None and sys.getrefcount(entry[1]) > 2:
                self._mark_kept(d)
                del self._maps[d.name]  # the user's views keep it mapped; never handed out again
        self.pending.clear()

    def _mark_kept(self, d: Descriptor) -> None:
        self.kept += 1
        ctl = self._ctls.get(d.prefix)
        if ctl is None:
            try:
                fd = os.open(self.dir / ctl_name(d.prefix), os.O_RDWR | OPEN_FLAGS)
            except FileNotFoundError:
                return  # the producer's pool is gone: the broker unlinks its slots, never reuses them
            try:
                ctl = mmap.mmap(fd, CTL_SLOTS)
            finally:
                os.close(fd)
            if len(self._ctls) >= 64:
                self._ctls.pop(next(iter(self._ctls))).close()
            self._ctls[d.prefix] = ctl
        ctl[d.index] = KEPT

    def close(self) -> None:
        self.settle()
        for name in list(self._maps):
            self._forget(name)
        for ctl in self._ctls.values():
            ctl.close()
        self._ctls.clear()
