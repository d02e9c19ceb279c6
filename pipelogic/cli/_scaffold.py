"""`pipelogic init NAME`: a component directory with a test."""

from __future__ import annotations

import re
from pathlib import Path

_COMPONENT = """name: {name}
language: py
worker:
  input_type: Int64
  output_type: Int64
  config_schema:
    factor: {{type: Int64, default: 2, description: "multiplier"}}
"""

_MAIN = """from pipelogic.worker import config, run


def {func}(x):
    return x * int(config.factor)


run({func})
"""

_REQUIREMENTS = """\
# What this component needs beyond the runtime image, one package per line, pinned with ==
# (onnxruntime==1.22.0). The image already has numpy, opencv, pyyaml, protobuf and pika.
# With no package listed here, the component runs on the runtime image itself.
"""

_TEST = """from pathlib import Path

from pipelogic.testing import run_component

COMPONENT = Path(__file__).resolve().parent.parent


def test_{func}_multiplies_by_factor():
    assert run_component(COMPONENT, [[1, 2, 3]], config={{"factor": 3}}) == [3, 6, 9]
"""


def scaffold(name: str, directory: Path) -> Path:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
        raise FileExistsError(f"component names are letters, digits, '_' and '-', got {name!r}")
    root = directory / name
    if root.exists():
        raise FileExistsError(f"{root} already exists")
    func = re.sub(r"\W", "_", name)
    (root / "src").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "component.yml").write_text(_COMPONENT.format(name=name))
    (root / "src" / "main.py").write_text(_MAIN.format(func=func))
    (root / "src" / "requirements.txt").write_text(_REQUIREMENTS)
    (root / "tests" / f"test_{func}.py").write_text(_TEST.format(func=func))
    return root
