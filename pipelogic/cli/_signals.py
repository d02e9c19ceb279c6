"""SIGTERM handling for worker processes (Python as PID 1 in a container ignores it)."""

from __future__ import annotations

import signal
import sys
from typing import Any


def install_sigterm() -> None:
    """Turn SIGTERM into a clean exit: ``finally`` blocks run and sockets are closed."""

    def _handler(signum: int, frame: Any) -> None:
        sys.exit(143)

    signal.signal(signal.SIGTERM, _handler)
