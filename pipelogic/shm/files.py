"""Files in the shared-memory directory made by a worker: created with exactly their mode,
and the handshake's probe (held under a lock while the worker waits to be welcomed)."""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from pathlib import Path

from pipelogic.shm import (
    enabled,
    file_mode,
    shm_dir,
)

__all__ = ["OPEN_FLAGS", "create_file", "make_probe", "remove_probe"]

log = logging.getLogger("pipelogic.worker")

OPEN_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW  # never through a link another user planted


_PROBES: dict[str, int] = {}  # probe name -> the fd holding its lock while the handshake lasts


def make_probe() -> str:
    """Create the handshake's probe file in the shared-memory directory and return its
    name ('' when the path is off or the directory is not usable: no shared memory then).
    The probe stays while the worker waits to be welcomed (minutes, while it rejoins a
    broker that is gone), so this process holds an exclusive flock on it until
    :func:`remove_probe`; a probe whose lock is free belongs to a worker that was killed,
    and a starting broker removes it. It is made under a hidden name and renamed once
    locked, so no sweeper ever sees it unlocked while its worker lives."""
    if not enabled():
        return ""
    name = f"pipelogic-probe-{secrets.token_hex(12)}"
    try:
        mode = file_mode()
    except ValueError as exc:
        log.warning("%s; shared memory is off", exc)
        return ""
    hidden = shm_dir() / f".{name}"
    try:
        fd = create_file(hidden, os.O_RDONLY, mode)
    except OSError:
        return ""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(hidden, shm_dir() / name)
    except OSError:
        os.close(fd)
        try:
            os.unlink(hidden)
        except OSError:
            pass
        return ""
    _PROBES[name] = fd
    return name


def create_file(path: Path, flags: int, mode: int) -> int:
    """A new file of exactly ``mode`` (the umask would strip 0666 to 0644): its fd."""
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | OPEN_FLAGS, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_probe(name: str) -> None:
    """Remove a probe of :func:`make_probe`, then let go of its lock."""
    if name:
        try:
            os.unlink(shm_dir() / name)
        except OSError:
            pass
        fd = _PROBES.pop(name, None)
        if fd is not None:
            os.close(fd)
