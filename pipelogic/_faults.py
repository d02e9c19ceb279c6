"""Fault injection for crash testing: named crash points and I/O errors.

Off unless the environment asks, and then cheap: one dict lookup per point.

- ``PIPELOGIC_CRASH_AT=label:k[,label:k...]`` SIGKILLs this process the k-th time ``label``
  is reached (labels are listed in :data:`LABELS`).
- ``PIPELOGIC_FAIL_AT=op:k[,op:k...]`` makes the k-th ``write`` raise ``OSError(ENOSPC)``,
  the k-th ``fsync`` raise ``OSError(EIO)``, the broker's k-th store ``commit`` or file-sink
  write (``sink``) raise ``OSError(ENOSPC)``; ``op:kxn`` fails n times from the k-th on (a disk that fills up and
  is freed again).
"""

from __future__ import annotations

import errno
import os
import signal

__all__ = ["BROKER_LABELS", "LABELS", "fail_point", "point"]

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
"""The worker's crash points."""

BROKER_LABELS = (  # the broker's commit path (backend_stub/store.py, backend_stub/broker.py)
    "broker-before-commit",
    "broker-after-sink-sync",
    "broker-after-commit",
    "broker-after-durable-sends",
)


def _parse(text: str) -> dict[str, tuple[int, int]]:
    """``label:k`` or ``label:kxn`` -> {label: (k, n)}."""
    out: dict[str, tuple[int, int]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        label, _, spec = part.rpartition(":")
        k, _, n = spec.partition("x")
        if not label or not k.isdigit() or int(k) < 1 or (n and not n.isdigit()):
            raise ValueError(f"fault spec {part!r}: expected label:k or label:kxn with k >= 1")
        out[label] = (int(k), int(n) if n else 1)
    return out


_CRASH = _parse(os.environ.get("PIPELOGIC_CRASH_AT", ""))
_FAIL = _parse(os.environ.get("PIPELOGIC_FAIL_AT", ""))
_seen: dict[str, int] = {}


def point(label: str) -> None:
    """A named crash point: SIGKILL self the k-th time it is reached, if asked to."""
    if _CRASH and label in _CRASH:
        _seen[label] = n = _seen.get(label, 0) + 1
        if n == _CRASH[label][0]:
            os.kill(os.getpid(), signal.SIGKILL)


def fail_point(op: str) -> None:
    """An I/O operation (``write``, ``fsync``, ``commit``): raise the injected error the
    k-th time (and the n-1 times after it)."""
    if _FAIL and op in _FAIL:
        key = "io:" + op
        _seen[key] = n = _seen.get(key, 0) + 1
        k, times = _FAIL[op]
        if k <= n < k + times:
            code = errno.EIO if op == "fsync" else errno.ENOSPC
            raise OSError(code, f"injected {os.strerror(code)} on {op} (PIPELOGIC_FAIL_AT)")
