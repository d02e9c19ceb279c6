"""SIGTERM handling for worker processes (Python as PID 1 in a container ignores it)."""

from __future__ import annotations

import signal


def install_sigterm() -> None:
    """A worker stops gracefully on SIGTERM (see :func:`pipelogic.worker._session.on_sigterm`)."""
    from pipelogic.worker._session import on_sigterm

    signal.signal(signal.SIGTERM, on_sigterm)
