"""Log set-up shared by every pipelogic process (the CLI, the broker, workers).

The level comes from ``--log-level`` or ``PIPELOGIC_LOG_LEVEL`` (children inherit it).
Lines carry a timestamp when stderr is not a terminal (a file, a container log), or as
``PIPELOGIC_LOG_TIMESTAMPS`` (1/0) says: `pipelogic up` sets it for its workers, whose
stderr is always a pipe, from whether its own output is a terminal.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["LEVELS", "setup"]

LEVELS = ("debug", "info", "warning", "error")


def setup(level: str | None = None) -> None:
    """Configure the root logger on stderr (stdout carries data: a ``stdout`` sink's)."""
    name = (level or os.environ.get("PIPELOGIC_LOG_LEVEL") or "info").lower()
    if name not in LEVELS:
        name = "info"
    stamps_env = os.environ.get("PIPELOGIC_LOG_TIMESTAMPS")
    stamps = stamps_env == "1" if stamps_env in ("0", "1") else not sys.stderr.isatty()
    fmt = "%(asctime)s %(levelname)-7s %(message)s" if stamps else "%(message)s"
    logging.basicConfig(level=name.upper(), format=fmt, stream=sys.stderr, force=True)
