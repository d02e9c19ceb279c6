"""Durable snapshots of one vertex's state in ``PIPELOGIC_STATE_DIR/<vertex>/``.

A snapshot file is ``MAGIC | body length (8 bytes, big-endian) | SHA-256 of body | body``;
the body is a msgpack map (``vertex``, ``run``, ``tick``, ``generation``, ``created``,
``meta``, ``state``). ``tick`` means: the state reflects every tick numbered below it.

A write is atomic and durable: temp file, write, fsync, rename over the final name, fsync of
the directory; only then is the previous-but-one generation removed, so the newest *and*
the previous snapshot are always on disk. Loading takes the newest snapshot whose checksum
holds and falls back to the previous one with a warning (the bad file is renamed
``*.corrupt``); when snapshot files exist but none is valid it raises
:class:`SnapshotCorrupt` rather than start from empty state. A lock file (``flock``) keeps
a second instance out of the directory; the kernel drops the lock when the holder dies,
however it dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from pipelogic import _faults
from pipelogic.errors import SnapshotCorrupt, StateError, StateLocked
from pipelogic.state._fs import FileSystem, OsFileSystem

__all__ = ["MAGIC", "Snapshot", "SnapshotStore", "decode_snapshot", "encode_snapshot"]

log = logging.getLogger("pipelogic.state")

MAGIC = b"PLSNAP01"
_HEADER = struct.Struct(">8sQ32s")
_NAME = re.compile(r"^snapshot-(\d{12})\.plsnap$")
_TEMP = re.compile(r"^snapshot-(\d{12})\.tmp$")


@dataclass(frozen=True)
class Snapshot:
    """A committed snapshot: ``state`` (serialised bytes) reflects every tick below ``tick``."""

    tick: int
    state: bytes
    run: str
    generation: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


def encode_snapshot(vertex: str, snap: Snapshot) -> bytes:
    body: bytes = msgpack.packb(
        {
            "vertex": vertex,
            "run": snap.run,
            "tick": snap.tick,
            "generation": snap.generation,
            "created": time.time(),
            "meta": snap.meta,
            "state": snap.state,
        },
        use_bin_type=True,
    )
    return _HEADER.pack(MAGIC, len(body), hashlib.sha256(body).digest()) + body


def decode_snapshot(data: bytes) -> Snapshot:
    """Check and decode a snapshot file's bytes; ValueError says what is wrong."""
    if len(data) < _HEADER.size:
        raise ValueError(f"file too short ({len(data)} bytes) for a snapshot header")
    magic, length, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"not a snapshot file (magic {magic!r}, expected {MAGIC!r})")
    body = data[_HEADER.size :]
    if len(body) != length:
        raise ValueError(f"torn file: header says {length} body bytes, found {len(body)}")
    if hashlib.sha256(body).digest() != digest:
        raise ValueError("checksum mismatch")
    try:
        m = msgpack.unpackb(body, raw=False)
        return Snapshot(int(m["tick"]), bytes(m["state"]), str(m["run"]), int(m["generation"]), dict(m["meta"]))
    except Exception as exc:  # noqa: BLE001 - any malformed body is one kind of failure
        raise ValueError(f"malformed snapshot body: {exc}") from None


class SnapshotStore:
    """The snapshot directory of one vertex (see the module docstring for the guarantees)."""

    def __init__(self, directory: str | Path, vertex: str, fs: FileSystem | None = None) -> None:
        self.dir = str(directory)
        self.vertex = vertex
        self.fs: FileSystem = fs if fs is not None else OsFileSystem()
        self.generation = 0  # the highest generation number seen or written
        self._good: int | None = None  # generation of the newest valid snapshot
        self._lock_fd: int | None = None

    # -- lock ------------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the directory's lock; :class:`StateLocked` if another process holds it."""
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, "LOCK")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 128, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateLocked(
                f"vertex {self.vertex}: the state directory {self.dir} is in use by another "
                f"worker (pid {holder}); two workers of a vertex cannot share one directory"
            ) from None
        os.ftruncate(fd, 0)
        # pid and host: a container's pid is 1, its host name tells which container holds it
        os.pwrite(fd, f"{os.getpid()} on host {socket.gethostname()}".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    # -- read ------------------------------------------------------------------------------

    def _generations(self) -> list[int]:
        gens = []
        for name in self.fs.listdir(self.dir):
            if m := _NAME.match(name):
                gens.append(int(m.group(1)))
            elif m := _TEMP.match(name):
                self.generation = max(self.generation, int(m.group(1)))
                self.fs.unlink(os.path.join(self.dir, name))  # a write that never committed
        return sorted(gens, reverse=True)

    def path(self, generation: int) -> str:
        return os.path.join(self.dir, f"snapshot-{generation:012d}.plsnap")

    def load(self) -> Snapshot | None:
        """The newest valid snapshot, or None when there is none at all."""
        gens = self._generations()
        if gens:
            self.generation = max(self.generation, gens[0])
        bad: list[str] = []
        for gen in gens:
            path = self.path(gen)
            try:
                snap = decode_snapshot(self.fs.read(path))
            except (OSError, ValueError) as exc:
                bad.append(f"{path}: {exc}")
                continue
            for msg in bad:
                log.warning("vertex %s: skipped a bad snapshot (%s); using generation %d", self.vertex, msg, gen)
            self._set_aside(gens, gen)
            self._good = gen
            return snap
        if bad:
            raise SnapshotCorrupt(
                f"vertex {self.vertex}: no valid snapshot in {self.dir}; refusing to start from "
                "empty state. " + "; ".join(bad)
            )
        return None

    def _set_aside(self, gens: list[int], good: int) -> None:
        """Rename corrupt generations newer than ``good`` so they never shadow a new one."""
        for gen in gens:
            if gen > good:
                try:
                    self.fs.replace(self.path(gen), self.path(gen)[: -len(".plsnap")] + ".corrupt")
                except OSError:
                    pass  # read-only or gone: the next save still gets a higher number

    def reset(self) -> None:
        """Remove every snapshot (they belong to another run of the pipeline)."""
        for gen in self._generations():
            self.fs.unlink(self.path(gen))
        self._good = None

    # -- write -----------------------------------------------------------------------------

    def save(self, tick: int, state: bytes, run: str, meta: dict[str, Any] | None = None) -> Snapshot:
        """Commit a snapshot durably; on any I/O error raise :class:`StateError` and leave
        the previous snapshot in place (nothing may then be reported as checkpointed)."""
        gen = self.generation + 1
        snap = Snapshot(tick, state, run, gen, dict(meta or {}))
        data = encode_snapshot(self.vertex, snap)
        final = self.path(gen)
        temp = final[: -len(".plsnap")] + ".tmp"
        fs = self.fs
        try:
            fd = fs.create(temp)
            try:
                half = len(data) // 2
                fs.write(fd, data[:half])
                _faults.point("mid-temp-write")
                fs.write(fd, data[half:])
                _faults.point("after-write-before-fsync")
                fs.fsync(fd)
            finally:
                fs.close(fd)
            _faults.point("after-fsync-before-replace")
            fs.replace(temp, final)
            _faults.point("after-replace-before-dir-fsync")
            fs.fsync_dir(self.dir)
        except OSError as exc:
            fs.unlink(temp)
            raise StateError(f"vertex {self.vertex}: cannot write a snapshot to {self.dir}: {exc}") from exc
        self.generation = gen
        previous, self._good = self._good, gen
        # The new one is durable: keep it and the previous one, drop everything older.
        for old in self._generations():
            if old < gen and old != previous:
                fs.unlink(self.path(old))
        return snap
