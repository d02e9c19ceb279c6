"""A peer's own virtualenv (dora-rs, Ray), made once from PyPI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def peer_venv(venv: Path, flag: str, packages: list[str], timeout_s: float) -> Path | None:
    """``venv`` with ``packages`` installed (made now if it is not there); None, with a
    message naming ``flag``, if it cannot be made: the benchmark goes on without the peer."""
    print(f"{flag}: installing {', '.join(packages)} into {venv} ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", *packages],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        print(f"{flag}: cannot install {packages[0]} here ({str(detail).strip()[-300:]}); going on without it")
        return None
    return venv
