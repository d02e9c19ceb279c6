"""Where a worker finds its broker, its component and its state directory (from the
environment a supervisor or a compose file sets)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pipelogic.transport import broker_address

__all__ = ["WorkerSettings", "main_file"]


@dataclass
class WorkerSettings:
    """Where a worker finds its broker, its component and its state directory."""

    broker: str
    component_dir: Path
    vertex: str | None = None
    state_dir: Path = Path(".pipelogic/state")
    connect_timeout_s: float = 60.0
    rejoin_timeout_s: float = 600.0  # how long a worker whose broker went away waits for it
    storage_retry_s: float = 600.0  # how long a worker retries a snapshot its disk refuses
    snapshot: str | None = None  # PIPELOGIC_SNAPSHOT: the policy when pipeline.yml sets none

    @classmethod
    def from_env(cls, main_file: str | None = None) -> WorkerSettings:
        env = os.environ
        cdir = env.get("PIPELOGIC_COMPONENT_DIR")
        if cdir:
            component_dir = Path(cdir)
        elif main_file:
            component_dir = Path(main_file).resolve().parent.parent
        else:
            component_dir = Path.cwd()
        return cls(
            broker=broker_address(),
            component_dir=component_dir,
            vertex=env.get("PIPELOGIC_COMPONENT") or None,
            state_dir=Path(env.get("PIPELOGIC_STATE_DIR", ".pipelogic/state")),
            connect_timeout_s=float(env.get("PIPELOGIC_CONNECT_TIMEOUT_S", "60")),
            rejoin_timeout_s=float(env.get("PIPELOGIC_REJOIN_TIMEOUT_S", "600")),
            storage_retry_s=float(env.get("PIPELOGIC_STORAGE_RETRY_S", "600")),
            snapshot=env.get("PIPELOGIC_SNAPSHOT") or None,
        )


def main_file() -> str | None:
    """The file of the ``__main__`` module (the component's src/main.py)."""
    main = sys.modules.get("__main__")
    return getattr(main, "__file__", None)
