"""Fault injection for crash testing (RELIABILITY.md T2): named crash points and I/O errors.

Off unless the environment asks, and then cheap: one dict lookup per point.

- ``PIPELOGIC_CRASH_AT=label:k[,label:k...]`` SIGKILLs this process the k-th time ``label``
  is reached (labels are listed in :data:`LABELS`).
- ``PIPELOGIC_FAIL_AT=op:k[,op:k...]`` makes the k-th ``write`` raise ``OSError(ENOSPC)`` or
  the k-th ``fsync`` raise ``OSError(EIO)``.
"""

from __future__ import annotations

import errno
import os
import signal

__all__ = ["LABELS", "fail_point", "point"]

LABELS = (
    "after-state-update-before-checkpoint",
    "mid-temp-write",
    "after-write-before-fsync",
    "after-fsync-before-replace",
    "after-replace-before-dir-fsync",
    "after-dir-fsync-before-report",
    "after-report",
    "after-output-send",
    "during-config-apply",
)


def _parse(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        label, _, k = part.rpartition(":")
        if not label or not k.isdigit() or int(k) < 1:
            raise ValueError(f"fault spec {part!r}: expected label:k with k >= 1")
        out[label] = int(k)
    return out


_CRASH = _parse(os.environ.get("PIPELOGIC_CRASH_AT", ""))
_FAIL = _parse(os.environ.get("PIPELOGIC_FAIL_AT", ""))
_seen: dict[str, int] = {}


def point(label: str) -> None:
    """A named crash point: SIGKILL self the k-th time it is reached, if asked to."""
    if _CRASH and label in _CRASH:
        _seen[label] = n = _seen.get(label, 0) + 1
        if n == _CRASH[label]:
            os.kill(os.getpid(), signal.SIGKILL)


def fail_point(op: str) -> None:
    """An I/O operation (``write`` or ``fsync``): raise the injected error the k-th time."""
    if _FAIL and op in _FAIL:
        key = "io:" + op
        _seen[key] = n = _seen.get(key, 0) + 1
        if n == _FAIL[op]:
            code = errno.ENOSPC if op == "write" else errno.EIO
            raise OSError(code, f"injected {os.strerror(code)} on {op} (PIPELOGIC_FAIL_AT)")
