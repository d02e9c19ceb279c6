"""A worker's pool of slots: its large outputs placed into reusable slot files, and the
buffers it lends (``loan()``) to be filled in place. No sockets here."""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import sys
import threading
from pathlib import Path
from typing import Any

from pipelogic.shm import (
    CTL_SLOTS,
    FREE,
    GONE,
    HELD,
    KEPT,
    ctl_name,
    encode_descriptor,
    file_mode,
    slot_mode,
    slot_name,
)
from pipelogic.shm.files import create_file

__all__ = ["SlotPool"]

log = logging.getLogger("pipelogic.worker")

_ROUND = 64 * 1024  # slot capacities are rounded up to this: frames of one stream vary a little


def _address(buf: Any) -> int | None:
    """Where ``buf``'s memory starts (None if that cannot be told: then it is no loan)."""
    try:
        anchor = ctypes.c_char.from_buffer(buf)  # writable buffers (a loan is)
    except (TypeError, ValueError):
        return None
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor


class _Slot:
    __slots__ = ("address", "capacity", "index", "mm")

    def __init__(self, index: int, capacity: int, mm: mmap.mmap) -> None:
        self.index = index
        self.capacity = capacity
        self.mm = mm
        anchor = ctypes.c_char.from_buffer(mm)
        self.address = ctypes.addressof(anchor)
        del anchor

    def in_use(self) -> bool:
        """Whether anything but this slot refers to its mapping: a loaned buffer (or a view
        of it) the user still holds. Every memoryview of the mapping, and every array made
        from one, keeps the mapping referenced until it goes; 2 is this slot's attribute
        and getrefcount's own argument."""
        return sys.getrefcount(self.mm) > 2


class SlotPool:
    """The slots of one worker incarnation (pool ``prefix``). :meth:`place` copies a
    payload into a FREE slot (or a new one) and returns its descriptor, or None: below
    ``min_bytes``, past ``max_bytes`` of slots, or when the directory is full (the payload
    then goes over the socket, as without shared memory; nothing is lost)."""

    def __init__(self, directory: Path, prefix: str, min_bytes: int, max_bytes: int) -> None:
        self.dir = directory
        self.prefix = prefix
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.slots: list[_Slot] = []
        self.total = 0
        self._spare: list[int] = []  # indices of abandoned slots, for new ones
        self._next_index = 0
        self._ctl: mmap.mmap | None = None
        self.mode = file_mode()
        self.broken = False  # the directory refused us: sockets only from now on
        self.placed = self.fallbacks = self.abandoned = self.created = self.loaned = self.sent_loans = 0
        # Loans (:meth:`lend`) by slot index: the user's until returned as an output or dropped.
        self._loans: dict[int, _Slot] = {}
        # The user function (main thread) and a capture thread (virtual_in) both use the pool.
        self._lock = threading.Lock()

    def _control(self) -> mmap.mmap:
        if self._ctl is None:
            fd = create_file(self.dir / ctl_name(self.prefix), os.O_RDWR, self.mode)
            try:
                os.ftruncate(fd, CTL_SLOTS)
                self._ctl = mmap.mmap(fd, CTL_SLOTS)
            finally:
                os.close(fd)
        return self._ctl

    def place(self, buf: Any) -> bytes | None:
        """The descriptor to send in place of ``buf`` (copied into a slot, or a loaned slot
        itself, with no copy), or None: send ``buf`` over the socket."""
        n = buf.nbytes if isinstance(buf, memoryview) else len(buf)
        if n < self.min_bytes or self.broken:
            return None
        with self._lock:
            try:
                ctl = self._control()
                index = self._loaned_at(buf, n) if self._loans else None
                if index is None:
                    best = self._free_slot(n, ctl)
                    if best is None:
                        self.fallbacks += 1
                        return None
                    best.mm[:n] = buf
                    index = best.index
                ctl[index] = HELD  # the broker owns it from the moment the descriptor is out
            except OSError as exc:
                self._broken(exc)
                return None
        self.placed += 1
        return encode_descriptor(self.prefix, index, n)

    def lend(self, n: int) -> memoryview | None:
        """A writable buffer of ``n`` bytes in a slot (None: below ``min_bytes``, or no
        room). Returned as (the whole of) a ``Bytes`` output it is sent with no copy; from
        then on it belongs to the broker and must not be written. Dropped unreturned, the
        slot goes back to the pool."""
        if n < self.min_bytes or self.broken:
            return None
        with self._lock:
            try:
                slot = self._free_slot(n, self._control())
            except OSError as exc:
                self._broken(exc)
                return None
            if slot is None:
                return None
            # The slot's own mapping, already faulted in: a fresh one would cost a page
            # fault per page written, more than the copy it saves.
            self._loans[slot.index] = slot
        self.loaned += 1
        return memoryview(slot.mm)[:n]

    def _loaned_at(self, buf: Any, n: int) -> int | None:
        """The loaned slot ``buf`` is (the whole of, from its start), if any."""
        address = _address(buf)
        for index, slot in self._loans.items():
            if address == slot.address:
                del self._loans[index]
                self.sent_loans += 1
                return index
        return None

    def _free_slot(self, n: int, ctl: mmap.mmap) -> _Slot | None:
        """The smallest FREE slot of at least ``n`` bytes, else a new one (None: no room)."""
        self._reclaim_loans()
        best: _Slot | None = None
        for s in list(self.slots):
            state = ctl[s.index]
            if state == GONE:  # released, but a consumer still maps it: never overwrite, let it go
                self._abandon(s, ctl)
            elif (
                state == FREE
                and s.capacity >= n
                and s.index not in self._loans
                and (best is None or s.capacity < best.capacity)
                and not s.in_use()
            ):
                # (in use: a loan sent and released that the user still holds; left alone)
                best = s
        return best if best is not None else self._new(n, ctl)

    def _reclaim_loans(self) -> None:
        """Loans the user dropped without returning them are FREE again."""
        for index, slot in list(self._loans.items()):
            if not slot.in_use():
                del self._loans[index]

    def _broken(self, exc: OSError) -> None:
        self.broken = True
        log.warning("shared memory %s: %s; large values go over the socket from now on", self.dir, exc)

    def _new(self, n: int, ctl: mmap.mmap) -> _Slot | None:
        cap = -(-n // _ROUND) * _ROUND
        if self.total + cap > self.max_bytes:
            # Make room from FREE slots too small to be of use for this size.
            for s in [s for s in self.slots if ctl[s.index] == FREE and s.capacity < n and s.index not in self._loans]:
                self._drop(s)
                if self.total + cap <= self.max_bytes:
                    break
            if self.total + cap > self.max_bytes:
                return None
        if self._spare:
            index = self._spare.pop()
        elif self._next_index < CTL_SLOTS:
            index = self._next_index
            self._next_index += 1
        else:
            return None
        path = self.dir / slot_name(self.prefix, index)
        try:
            os.unlink(path)  # an abandoned slot's name: its old inode lives on for whoever maps it
        except FileNotFoundError:
            pass
        fd = create_file(path, os.O_RDWR, slot_mode(self.mode))
        try:
            try:
                # Reserve the pages now: writing to a tmpfs mapping past the file system's
                # size kills the process with SIGBUS, an allocation error does not.
                os.posix_fallocate(fd, 0, cap)
            except OSError as exc:
                os.unlink(path)
                if exc.errno in (errno.ENOSPC, errno.EFBIG):
                    self._spare.append(index)
                    return None
                raise
            mm = mmap.mmap(fd, cap)
        finally:
            os.close(fd)
        slot = _Slot(index, cap, mm)
        self.slots.append(slot)
        self.total += cap
        self.created += 1
        ctl[index] = FREE
        return slot

    def _drop(self, s: _Slot) -> None:
        self.slots.remove(s)
        self.total -= s.capacity
        if not s.in_use():
            s.mm.close()  # else the user's views keep the mapping; it goes with them
        try:
            os.unlink(self.dir / slot_name(self.prefix, s.index))
        except FileNotFoundError:
            pass
        self._spare.append(s.index)

    def _abandon(self, s: _Slot, ctl: mmap.mmap) -> None:
        self._drop(s)
        ctl[s.index] = FREE
        self.abandoned += 1

    def close(self) -> None:
        """This incarnation ends: unmap everything and remove the slots nobody holds
        (loans outstanding keep their mapping; their files go).
        Held ones (HELD, KEPT) stay for the broker, which removes them (and the control file) once it
        no longer needs them."""
        log.debug(
            "shared memory pool %s: %d placed (%d of them loans), %d loaned, %d slots created, %d abandoned "
            "(kept by a consumer), %d over the socket",
            self.prefix,
            self.placed,
            self.sent_loans,
            self.loaned,
            self.created,
            self.abandoned,
            self.fallbacks,
        )
        with self._lock:
            self._close()

    def _close(self) -> None:
        ctl = self._ctl
        for s in list(self.slots):
            state = ctl[s.index] if ctl is not None else FREE
            if not s.in_use():
                s.mm.close()
            if state not in (HELD, KEPT):
                try:
                    os.unlink(self.dir / slot_name(self.prefix, s.index))
                except FileNotFoundError:
                    pass
        self.slots.clear()
        self._loans.clear()
        self.total = 0
        if ctl is not None:
            ctl.close()
            self._ctl = None
