import os
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
