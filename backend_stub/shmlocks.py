"""The broker's lock files in the shared-memory directory: one per run, held while the run
lives, so a starting broker can tell the slots of a dead run (lock free) from a live one's."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["remove_if_free", "remove_quietly", "same_file", "take_lock"]

log = logging.getLogger("backend_stub")

_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW


def take_lock(path: Path, wait_s: float) -> int | None:
    """Open (creating it) and exclusively flock the lock file ``path``; its fd, or None if
    it cannot be had within ``wait_s``. A sweeper of a dead run holds the lock only while
    it removes that run's files, and unlinks the lock file last: after waiting for it, the
    file is checked to still be the one at ``path``, else it is made anew."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _FLAGS, 0o600)
        except FileNotFoundError:
            log.info("broker: no shared-memory directory %s; keeping to sockets", path.parent)
            return None
        except OSError as exc:
            log.warning("broker: cannot create the shared-memory lock file %s: %s; keeping to sockets", path, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() >= deadline:
                log.warning(
                    "broker: the shared-memory lock file %s is held by another process; keeping to sockets", path
                )
                return None
            time.sleep(0.01)
            continue
        if same_file(path, fd):
            return fd
        os.close(fd)  # removed while we waited: make it anew


def remove_if_free(path: Path, before: Callable[[], None]) -> bool:
    """If no live process holds the flock of ``path`` (a file of this user): take it, run
    ``before`` (remove what the file vouched for), then unlink ``path`` while still holding
    it, so whoever waits for that lock finds the file gone and makes a new one. True if
    it was removed."""
    try:
        fd = os.open(path, os.O_RDONLY | _FLAGS)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            return False  # another user's: theirs to remove
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its process lives
        if not same_file(path, fd):
            return False  # removed by someone else meanwhile
        before()
        remove_quietly(path)
        return True
    finally:
        os.close(fd)


def same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def remove_quietly(path: Path) -> None:
    """Unlink, quietly: what is gone already or not ours to remove stays as it is."""
    try:
        os.unlink(path)
    except OSError:
        pass
