"""Large frames of retained messages, written once, beside the recovery store's database.

SQLite in WAL mode writes a page twice (the log, then the database at a checkpoint), and a
frame of 2.7 MB fills 675 of them: a 720p stream retained for recovery cost about 3.6 bytes
written per frame byte. So a commit appends every frame of at least :data:`SPILL_MIN`
bytes to one file of its own (``frames/<commit>``), fsyncs it (and the folder) before the
transaction that references it commits, and the ``value`` row holds a reference
``(file, offset, length)`` in its place: each large byte is written once.
A frame held in a shared-memory slot goes from the slot's file to this one by ``sendfile``,
never through the broker's memory (:meth:`backend_stub.shm.SlotRef.copy_to`).

A file is removed once no committed row references it (the rows are deleted in a commit
first, then the file goes; a crash between leaves a file nobody references, which the next
start removes). The references of the live rows are kept in memory, per stream in sequence
order, so releasing messages below a low-water mark costs only the spilled ones.
"""

from __future__ import annotations

import os
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any

import msgpack

__all__ = ["SPILL_MIN", "Spill"]

SPILL_MIN = 64 * 1024
"""Frames at least this long go to a spill file; smaller ones stay in the row."""

_REF = 1  # the msgpack ext type of a reference (file number, offset, length)


class Spill:
    """The spill files of one store (``directory``), and which live rows reference them."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, OrderedDict[int, int]] = defaultdict(OrderedDict)  # stream -> seq -> file
        self._refs: dict[int, int] = {}  # file -> live rows referencing it
        self._next = max((int(p.name) for p in self._files()), default=0) + 1
        self._doomed: list[int] = []  # files to remove once the commit that released them is done
        self.written = 0  # bytes written to spill files (for the status and the bench)

    def _files(self) -> list[Path]:
        return [p for p in self.dir.iterdir() if p.name.isdigit()]

    # -- a commit ----------------------------------------------------------------------------

    def pack_rows(self, rows: list[tuple[str, int, list[Any]]]) -> list[tuple[str, int, bytes]]:
        """The ``value`` rows for ``(stream, seq, frames)``: large frames appended to this
        commit's file (fsynced here, before the caller commits), references in their place."""
        out: list[tuple[str, int, bytes]] = []
        fd = -1
        number = self._next
        offset = 0
        try:
            for stream, seq, frames in rows:
                packed: list[Any] = []
                spilled = False
                for f in frames:
                    # A shared-memory slot (a SlotRef: bytes holding a descriptor, whose len()
                    # is its payload's) is copied by the kernel from its file; anything else
                    # is written from its buffer (a zmq.Frame's, or the bytes themselves).
                    buf = None if hasattr(f, "copy_to") else (f.buffer if hasattr(f, "buffer") else f)
                    n = len(f) if buf is None else len(buf)
                    if n < SPILL_MIN:
                        packed.append(bytes(f.buffer if buf is None else buf))
                        continue
                    if fd < 0:
                        fd = os.open(
                            self.dir / str(number), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
                        )
                    if buf is None:
                        f.copy_to(fd)
                    else:
                        view = memoryview(buf).cast("B")
                        done = 0
                        while done < n:
                            done += os.write(fd, view[done:])
                    packed.append(msgpack.ExtType(_REF, msgpack.packb((number, offset, n))))
                    offset += n
                    spilled = True
                old = self._rows[stream].pop(seq, None)
                if old is not None:
                    self._release(old)
                if spilled:
                    self._rows[stream][seq] = number
                    self._refs[number] = self._refs.get(number, 0) + 1
                out.append((stream, seq, msgpack.packb(packed, use_bin_type=True)))
            if fd >= 0:
                os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        if fd >= 0:
            self._next += 1
            self.written += offset
            dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)  # the file's name is durable before a row names it
            finally:
                os.close(dfd)
        return out

    def release_below(self, stream: str, low: int) -> None:
        """The rows of ``stream`` below ``low`` are deleted in this commit."""
        rows = self._rows.get(stream)
        while rows:
            seq = next(iter(rows))
            if seq >= low:
                break
            self._release(rows.pop(seq))

    def _release(self, number: int) -> None:
        left = self._refs[number] - 1
        if left:
            self._refs[number] = left
        else:
            del self._refs[number]
            self._doomed.append(number)

    def committed(self) -> None:
        """The commit is durable: remove the files no row references any more. (After a
        failed commit nothing is removed: its deletes are done again by the next commit,
        which also writes its messages again, to a new file, releasing the failed one's.)"""
        for number in self._doomed:
            try:
                os.unlink(self.dir / str(number))
            except FileNotFoundError:
                pass
        self._doomed.clear()

    # -- a start -------------------------------------------------------------------------------

    def unpack_row(self, stream: str, seq: int, row: bytes) -> tuple[Any, ...]:
        """A stored row's frames, large ones read from their file; noted as live."""
        frames = msgpack.unpackb(row, raw=False, ext_hook=_ext)
        out = []
        for f in frames:
            if isinstance(f, _Ref):
                with open(self.dir / str(f.file), "rb") as fh:
                    fh.seek(f.offset)
                    data = fh.read(f.length)
                if len(data) != f.length:
                    raise OSError(f"{self.dir / str(f.file)}: {len(data)} bytes at {f.offset}, expected {f.length}")
                out.append(data)
                self._rows[stream][seq] = f.file
                self._refs[f.file] = self._refs.get(f.file, 0) + 1
            else:
                out.append(f)
        return tuple(out)

    def sweep(self) -> None:
        """Remove the files no live row references (a crash after a commit released them)."""
        for p in self._files():
            if int(p.name) not in self._refs:
                p.unlink(missing_ok=True)

    def clear(self) -> None:
        """No row is left (a new run, or the run finished): remove every file."""
        self._rows.clear()
        self._refs.clear()
        self._doomed.clear()
        for p in self._files():
            p.unlink(missing_ok=True)


class _Ref:
    __slots__ = ("file", "length", "offset")

    def __init__(self, file: int, offset: int, length: int) -> None:
        self.file, self.offset, self.length = file, offset, length


def _ext(code: int, data: bytes) -> Any:
    if code == _REF:
        return _Ref(*msgpack.unpackb(data))
    return msgpack.ExtType(code, data)
