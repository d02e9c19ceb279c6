"""Helpers shared by the integration tests (a module, not conftest: several conftest.py
files exist, and only one can be imported under that name)."""

import subprocess
import sys
import textwrap
from pathlib import Path


def run_up(tmp_path: Path, pipeline: str, env: dict, *extra: str) -> subprocess.CompletedProcess:
    """Write pipeline.yml and run `pipelogic up` on it (random port, bounded time)."""
    f = tmp_path / "pipeline.yml"
    f.write_text(textwrap.dedent(pipeline))
    return subprocess.run(
        [sys.executable, "-m", "pipelogic", "up", str(f), "--listen", "tcp://127.0.0.1:0", "--timeout", "90", *extra],
        env=env, capture_output=True, text=True, timeout=120,
    )
