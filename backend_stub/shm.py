"""The broker's side of the shared-memory path (:mod:`pipelogic.shm`): which worker
incarnations share the broker's shared-memory directory, the slots the broker holds, and
giving them back.

A descriptor frame that arrives in a Results message becomes a :class:`SlotRef`, which the
scheduler keeps wherever it would keep the payload frame (input buffers, tick logs, the
tap ring, the store's journal). ``len()`` of a SlotRef is the payload's length, so every
byte bound (``buffer_bytes``, ``inflight_bytes``) counts the slot. When the last reference
goes, the slot is given back: set FREE in its pool's control file for the producer to
reuse, or, if the producer's incarnation has ended, unlinked.

Whatever must leave this host gets the payload itself: ticks for a worker that did not
prove it shares the directory, tap replies, the recovery store (which spills the bytes, so
a restarted broker needs no slot of an earlier one), sinks and dead letters.
"""

from __future__ import annotations

import builtins
import errno
import logging
import mmap
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from backend_stub.shmlocks import remove_if_free, remove_quietly, take_lock
from pipelogic.errors import ProtocolError, SlotLost
from pipelogic.shm import (
    CTL_SLOTS,
    FREE,
    GONE,
    HELD,
    KEPT,
    MAGIC,
    ctl_name,
    decode_descriptor,
    enabled,
    max_bytes,
    min_bytes,
    pool_prefix,
    run_prefix,
    shm_dir,
    slot_name,
)

__all__ = ["ANYONE", "NOGROUP", "Access", "SlotLost", "SlotRef", "SlotRegistry"]

log = logging.getLogger("pipelogic.broker")

ANYONE = -1
"""The user of a pool whose files are 0666: any worker sharing the directory maps them."""
NOGROUP = -1
"""The group of a pool whose files no group but its owner's reads (0600, 0666)."""


class Access(NamedTuple):
    """Who maps a pool's files, as the kernel will judge it: their owner ``uid`` (ANYONE
    when the files are 0666) and, when they are group-readable (0660), the members of
    ``gid``. Read off the worker's probe file, which the kernel made with its uid and gid."""

    uid: int
    gid: int = NOGROUP


class _Reader:
    """A worker incarnation that shares the directory: its uid (its probe file's owner)
    and the groups its Hello claims. A false claim only gets it descriptors it cannot open."""

    __slots__ = ("groups", "uid")

    def __init__(self, uid: int, groups: frozenset[int]) -> None:
        self.uid = uid
        self.groups = groups

    def maps(self, access: Access) -> bool:
        return access.uid in (ANYONE, self.uid) or access.gid in self.groups


_PROBE = re.compile(r"pipelogic-probe-[0-9a-f]{24}")
_LOCK = re.compile(r"(pipelogic-[0-9a-f]{1,8}-)lock")
_LOCK_WAIT_S = 2.0  # how long a starting broker waits for a sweeper that holds its run's lock
_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW


class _Pool:
    __slots__ = ("access", "ctl", "dead", "epoch", "live", "prefix")

    def __init__(self, epoch: int, prefix: str, access: Access) -> None:
        self.epoch = epoch
        self.prefix = prefix
        self.access = access  # who may map its files
        self.live: set[int] = set()  # slot indices the broker holds
        self.ctl: mmap.mmap | None = None
        self.dead = False


class SlotRef(bytes):
    """A descriptor frame held in place of its payload (sent as is to workers that share
    the directory). ``len()`` is the payload's length; ``.bytes`` / ``.buffer`` read the
    payload (as a zmq.Frame's do); dropping the last reference gives the slot back."""

    _registry: SlotRegistry
    _pool: _Pool
    _index: int
    _length: int

    def __len__(self) -> int:
        return self._length

    @property
    def bytes(self) -> builtins.bytes:
        return self._registry.read(self)

    @property
    def buffer(self) -> builtins.bytes:
        return self._registry.read(self)

    def copy_to(self, fd: int) -> None:
        """Write the payload to ``fd`` at its position, copied by the kernel (no copy
        through this process: the recovery store's spill)."""
        self._registry.write_to(self, fd)

    @property
    def name(self) -> str:
        return slot_name(self._pool.prefix, self._index)

    def __del__(self) -> None:
        try:
            self._registry.release(self._pool, self._index)
        except Exception:  # noqa: BLE001 - never raise from a finalizer (interpreter exit)
            pass


def _write_mapped(fd: int, length: int, out: int) -> None:
    """Write the first ``length`` bytes of the file ``fd`` to ``out`` through a read-only
    mapping (where ``sendfile`` is refused)."""
    with mmap.mmap(fd, length, prot=mmap.PROT_READ) as mm, memoryview(mm) as view:
        done = 0
        while done < length:
            done += os.write(out, view[done:])


class SlotRegistry:
    """The pools of one run's worker incarnations, in ``directory``."""

    def __init__(self, run: str, directory: Path | None = None, secure: bool = False) -> None:
        self.dir = directory if directory is not None else shm_dir()
        # A broker with keys: no pool anyone can map (0666 files), since any process that
        # reaches the directory would read what the keys keep from strangers.
        self.secure = secure
        self._warned = False
        self.run = run
        self.prefix = run_prefix(run)
        self.lock_name = self.prefix + "lock"
        self._lock_fd: int | None = None
        self.pools: dict[int, _Pool] = {}
        self.readers: dict[int, _Reader] = {}  # epochs that map slots themselves
        self.adopted = self.released = self.unlinked = 0

    # -- the run's lock ------------------------------------------------------------------------

    def claim(self) -> bool:
        """Start using the directory: take this run's lock file (``<run prefix>lock``, held
        while this broker lives; the kernel drops it when the process dies, SIGKILL
        included), then remove this run's pools of an earlier broker and every pool of a
        run whose broker died without coming back (its lock file is free). False if the
        lock cannot be had (the directory is unusable, or another live process holds it):
        the broker then keeps to sockets, since without the lock another broker would
        take this run's pools for a dead run's."""
        fd = take_lock(self.dir / self.lock_name, _LOCK_WAIT_S)
        if fd is None:
            return False
        self._lock_fd = fd
        self.sweep()
        runs, probes = self.sweep_dead()
        if runs:
            log.info("broker: removed the shared-memory pools of %d run(s) whose broker died", runs)
        if probes:
            log.info("broker: removed %d shared-memory probe file(s) of workers that were killed", probes)
        return True

    def sweep_dead(self) -> tuple[int, int]:
        """Remove what processes killed for good left in the directory: the pool files of
        every run whose lock file no live process holds (its broker was killed and never
        restarted), and the handshake probes no live worker holds (a worker holds its
        probe's flock until it removes it: one killed while it waited to be welcomed leaves
        it behind). Only files of this user are considered: another user's are theirs to
        remove. Returns (runs, probes) removed."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return 0, 0
        runs = probes = 0
        for name in names:
            if _PROBE.fullmatch(name):
                probes += remove_if_free(self.dir / name, lambda: None)
                continue
            m = _LOCK.fullmatch(name)
            if m is None or name == self.lock_name:
                continue

            def remove_run(prefix: str = m.group(1), lock: str = name) -> None:
                for other in names:
                    if other.startswith(prefix) and other != lock:
                        remove_quietly(self.dir / other)

            runs += remove_if_free(self.dir / name, remove_run)
        return runs, probes

    def close(self) -> None:
        """The broker ends: remove this run's pools and its lock file."""
        self.sweep()
        if self._lock_fd is not None:
            remove_quietly(self.dir / self.lock_name)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the handshake ---------------------------------------------------------------------

    def probe(self, name: str) -> Access | None:
        """Who maps the files of the worker whose Hello names probe file ``name`` (read off
        the probe: its owner, its group if the mode gives the group read and write, ANYONE
        if 0666), if the probe is in our directory and we can open it as we must open that
        worker's control file (read and write); else None. A secure registry (keys) says
        None for 0666 files: sockets for that worker."""
        if not name or not enabled() or not _PROBE.fullmatch(name):
            return None
        try:
            fd = os.open(self.dir / name, os.O_RDWR | _FLAGS)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_mode & 0o666 == 0o666:
            if self.secure:
                if not self._warned:  # once: every worker of the run is likely set alike
                    self._warned = True
                    log.warning(
                        "broker: a worker's shared-memory files are 0666 (PIPELOGIC_SHM_MODE=666), which any "
                        "process reaching %s can read; with keys, its large values go over the socket (use 660)",
                        self.dir,
                    )
                return None
            return Access(ANYONE)
        if st.st_mode & 0o060 == 0o060:
            return Access(st.st_uid, st.st_gid)
        return Access(st.st_uid)

    def register(self, epoch: int, access: Access, groups: list[Any] | None = None) -> dict[str, Any]:
        """Worker incarnation ``epoch`` shares the directory (``access``: of its probe), in
        ``groups`` as its Hello says: its pool, for the Welcome."""
        prefix = pool_prefix(self.run, epoch)
        self.pools[epoch] = _Pool(epoch, prefix, access)
        claimed = frozenset(g for g in groups or () if type(g) is int and g >= 0)
        self.readers[epoch] = _Reader(access.uid, claimed)
        return {"prefix": prefix, "min_bytes": min_bytes(), "max_bytes": max_bytes()}

    # -- descriptors in ------------------------------------------------------------------------

    def adopt(self, epoch: int, entries: list[Any]) -> None:
        """Replace the descriptor frames in split Results ``entries`` of ``epoch`` by
        SlotRefs. ProtocolError for a descriptor from an incarnation without a pool, of
        another pool, malformed, or naming a slot the broker already holds."""
        pool = self.pools.get(epoch)
        for _tick, streams, _extra in entries:
            for values in streams:
                for i, v in enumerate(values):
                    if len(v) == 1:
                        continue
                    new = None
                    for j in range(1, len(v)):
                        f = v[j]
                        if len(f) > 128:
                            continue  # a payload frame (they are at least 64 KiB)
                        buf = getattr(f, "buffer", f)
                        if bytes(buf[:8]) != MAGIC:
                            continue
                        ref = self._adopt(pool, epoch, buf)
                        if new is None:
                            new = list(v)
                        new[j] = ref
                    if new is not None:
                        values[i] = tuple(new)

    def _adopt(self, pool: _Pool | None, epoch: int, buf: Any) -> SlotRef:
        if pool is None or pool.dead:
            raise ProtocolError(f"epoch {epoch}: a shared-memory descriptor from a worker that has no pool")
        try:
            d = decode_descriptor(buf)
        except ValueError as exc:
            raise ProtocolError(f"epoch {epoch}: {exc}") from None
        if d.prefix != pool.prefix:
            raise ProtocolError(f"epoch {epoch}: a descriptor of pool {d.prefix}, not of its own {pool.prefix}")
        if d.index in pool.live:
            raise ProtocolError(f"epoch {epoch}: slot {d.index} sent again while the broker still holds it")
        ref = SlotRef(buf)
        ref._registry = self
        ref._pool = pool
        ref._index = d.index
        ref._length = d.length
        pool.live.add(d.index)
        self.adopted += 1
        return ref

    # -- slots out -------------------------------------------------------------------------

    def release(self, pool: _Pool, index: int) -> None:
        pool.live.discard(index)
        self.released += 1
        if pool.dead:
            self._unlink(slot_name(pool.prefix, index))
            if not pool.live:
                self._finish(pool)
            return
        ctl = self._control(pool)
        if ctl is not None:
            state = ctl[index]
            if state == HELD:
                ctl[index] = FREE
            elif state == KEPT:  # a consumer maps it still: the producer lets it go instead
                ctl[index] = GONE

    def _control(self, pool: _Pool) -> mmap.mmap | None:
        if pool.ctl is None:
            try:
                fd = os.open(self.dir / ctl_name(pool.prefix), os.O_RDWR | _FLAGS)
            except OSError:
                return None
            try:
                if os.fstat(fd).st_size < CTL_SLOTS:
                    return None
                pool.ctl = mmap.mmap(fd, CTL_SLOTS)
            finally:
                os.close(fd)
        return pool.ctl

    def read(self, ref: SlotRef) -> bytes:
        """A copy of the payload ``ref`` names (for what leaves this host or is decoded
        here); SlotLost if it cannot be read."""
        fd = self._open(ref)
        try:
            with mmap.mmap(fd, ref._length, prot=mmap.PROT_READ) as mm:
                return mm[:]
        except OSError as exc:
            raise self._lost(ref, exc) from None
        finally:
            os.close(fd)

    def write_to(self, ref: SlotRef, out: int) -> None:
        """Write the payload ``ref`` names to the file ``out`` at its position with
        ``sendfile``: the kernel copies it, nothing goes through this process's memory (a
        read would copy 6 MB a 1080p frame, and fault in as much). SlotLost if the slot
        cannot be read; an ``OSError`` of the write (a full disk) is raised as it is, and
        may leave part of the payload written."""
        fd = self._open(ref)
        try:
            done = 0
            while done < ref._length:
                try:
                    sent = os.sendfile(out, fd, done, ref._length - done)
                except OSError as exc:
                    if done or exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    _write_mapped(fd, ref._length, out)  # a file system sendfile does not serve
                    return
                if not sent:  # the file was cut behind the broker's back
                    raise self._lost(ref, OSError(f"{ref._length} bytes expected, the file ended at {done}"))
                done += sent
        finally:
            os.close(fd)

    def _open(self, ref: SlotRef) -> int:
        """The slot's file, open for reading and at least as long as the payload."""
        try:
            fd = os.open(self.dir / ref.name, os.O_RDONLY | _FLAGS)
        except OSError as exc:
            raise self._lost(ref, exc) from None
        try:
            if os.fstat(fd).st_size < ref._length:
                raise self._lost(ref, OSError(f"{ref._length} bytes expected, the file has fewer"))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _lost(self, ref: SlotRef, exc: OSError) -> SlotLost:
        return SlotLost(
            f"shared-memory slot {self.dir / ref.name} (epoch {ref._pool.epoch}) cannot be read: {exc}; "
            "a process other than the broker removed or truncated it"
        )

    @property
    def holding(self) -> int:
        """Slots the broker holds now."""
        return self.adopted - self.released

    def resolve(self, frames: list[Any]) -> list[Any]:
        """``frames`` with every SlotRef replaced by its payload (for a reader elsewhere)."""
        return [f.bytes if type(f) is SlotRef else f for f in frames]

    def resolve_for(self, epoch: int, frames: list[Any]) -> list[Any]:
        """``frames`` as worker ``epoch`` must get them: descriptors of slots it can map
        (it shares the directory and is the producer's user, in the producer's group of a
        group-readable pool, or the files are 0666), the payload of any other."""
        reader = self.readers.get(epoch)
        if reader is None:
            return self.resolve(frames)
        return [f.bytes if type(f) is SlotRef and not reader.maps(f._pool.access) else f for f in frames]

    def readable_by(self, epoch: int) -> bool:
        return epoch in self.readers

    def stats(self) -> dict[str, Any]:
        """For the status: the directory, workers sharing it, slots taken, held, removed."""
        return {
            "dir": str(self.dir),
            "workers": len(self.readers),
            "adopted": self.adopted,
            "held": self.holding,
            "unlinked": self.unlinked,
        }

    # -- incarnations end ----------------------------------------------------------------------

    def reap(self, alive: Callable[[int], bool]) -> None:
        """Pools of incarnations that ended: unlink the slots the broker does not hold (the
        rest go as they are released), and forget a pool once none is left."""
        ended = [p for e, p in self.pools.items() if not alive(e)]
        if not ended:
            return
        try:
            names = os.listdir(self.dir)
        except OSError:
            names = []
        for pool in ended:
            self.readers.pop(pool.epoch, None)
            pool.dead = True
            head = pool.prefix + "-"
            for name in names:
                if name.startswith(head):
                    tail = name[len(head) :]
                    if tail != "ctl" and not (tail.isdigit() and int(tail) in pool.live):
                        self._unlink(name)
            if not pool.live:
                self._finish(pool)

    def _finish(self, pool: _Pool) -> None:
        if pool.ctl is not None:
            pool.ctl.close()
            pool.ctl = None
        self._unlink(ctl_name(pool.prefix))
        self.pools.pop(pool.epoch, None)

    def sweep(self) -> int:
        """Unlink every file of this run's pools (the broker starts or ends: no slot of
        them is needed, a restarted broker's values were spilled to its store)."""
        n = 0
        try:
            names = os.listdir(self.dir)
        except OSError:
            return 0
        for name in names:
            if name.startswith(self.prefix) and name != self.lock_name:
                n += self._unlink(name)
        for pool in self.pools.values():
            pool.dead = True
            if pool.ctl is not None:
                pool.ctl.close()
                pool.ctl = None
        return n

    def _unlink(self, name: str) -> int:
        try:
            os.unlink(self.dir / name)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("broker: cannot remove shared-memory slot %s: %s", name, exc)
            return 0
        self.unlinked += 1
        return 1
