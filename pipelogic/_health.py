"""A liveness beacon for container health checks.

When ``PIPELOGIC_HEALTH_FILE`` is set (the images set it), the broker's loop and the
worker's heartbeat thread touch that file while they make progress; ``pipelogic health``
reports the container unhealthy when the file is older than ``PIPELOGIC_HEALTH_MAX_AGE_S``
(default 15 s). Touching is rate-limited, so calling :func:`beat` often costs nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["MAX_AGE_S", "beat", "check"]

MAX_AGE_S = 15.0
_FILE = os.environ.get("PIPELOGIC_HEALTH_FILE") or None
_INTERVAL_S = 1.0
_last = 0.0


def beat() -> None:
    """Record that this process is alive and making progress (at most once a second)."""
    global _last
    if _FILE is None:
        return
    now = time.monotonic()
    if now - _last < _INTERVAL_S:
        return
    _last = now
    try:
        Path(_FILE).touch()
    except OSError:
        pass  # a read-only /tmp must not stop the work; the check will say unhealthy


def check(file: str | None = None, max_age_s: float | None = None) -> tuple[bool, str]:
    """(healthy, reason) from the beacon file's age."""
    f = file or _FILE
    if f is None:
        return True, "no PIPELOGIC_HEALTH_FILE set: nothing to check"
    limit = max_age_s if max_age_s is not None else float(os.environ.get("PIPELOGIC_HEALTH_MAX_AGE_S", MAX_AGE_S))
    try:
        age = time.time() - os.stat(f).st_mtime
    except FileNotFoundError:
        return False, f"{f}: not written yet (starting, or never connected)"
    if age > limit:
        return False, f"{f}: last beat {age:.0f} s ago (limit {limit:g} s)"
    return True, f"last beat {age:.1f} s ago"
