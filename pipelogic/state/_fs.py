"""The file operations the snapshot writer uses, behind one small interface.

The writer calls only these, so a test can record them and replay every possible on-disk
state after a power cut (tests/unit/test_snapshot_power_loss.py). :class:`OsFileSystem` is the real one; it
passes each write and fsync through :func:`pipelogic._faults.fail_point` so I/O errors can
be injected (pipelogic/_faults.py).
"""

from __future__ import annotations

import os
from typing import Protocol

from pipelogic import _faults

__all__ = ["FileSystem", "OsFileSystem"]


class FileSystem(Protocol):
    def create(self, path: str) -> int: ...
    def write(self, fd: int, data: bytes) -> None: ...
    def fsync(self, fd: int) -> None: ...
    def close(self, fd: int) -> None: ...
    def replace(self, src: str, dst: str) -> None: ...
    def fsync_dir(self, path: str) -> None: ...
    def unlink(self, path: str) -> None: ...
    def listdir(self, path: str) -> list[str]: ...
    def read(self, path: str) -> bytes: ...


class OsFileSystem:
    """The real file system (POSIX)."""

    def create(self, path: str) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, fd: int, data: bytes) -> None:
        _faults.fail_point("write")
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def fsync(self, fd: int) -> None:
        _faults.fail_point("fsync")
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def fsync_dir(self, path: str) -> None:
        _faults.fail_point("fsync")
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def unlink(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except FileNotFoundError:
            return []

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()
