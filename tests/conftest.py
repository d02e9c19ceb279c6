import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def make_component(base: Path, name: str, yml: str, main: str) -> Path:
    d = base / name
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text(textwrap.dedent(yml))
    (d / "src" / "main.py").write_text(textwrap.dedent(main))
    return d


@pytest.fixture
def component(tmp_path):
    """make(name, component_yml, main_py) -> directory."""
    return lambda name, yml, main: make_component(tmp_path, name, yml, main)


@pytest.fixture
def cli_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable


def run_up(tmp_path: Path, pipeline: str, env: dict, *extra: str) -> subprocess.CompletedProcess:
    """Write pipeline.yml and run `pipelogic up` on it (random port, bounded time)."""
    f = tmp_path / "pipeline.yml"
    f.write_text(textwrap.dedent(pipeline))
    return subprocess.run(
        [sys.executable, "-m", "pipelogic", "up", str(f), "--listen", "tcp://127.0.0.1:0", "--timeout", "90", *extra],
        env=env, capture_output=True, text=True, timeout=120,
    )
