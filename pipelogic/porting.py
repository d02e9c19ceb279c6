"""What the platform's documentation tells component authors, checked here: the packages
its runtime image already has, its rules for ``src/requirements.txt``, and the
``build_system`` keys of component.yml with the image each maps to here.

Pure: reads files, imports nothing of the component. ``validate`` prints what these
functions return as warnings (docs/platform.md, docs/containers.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PLATFORM_BASE",
    "Requirement",
    "build_system_note",
    "has_requirements",
    "read_requirements",
    "requirement_notes",
]

# What the platform's runtime image carries besides pipelogic (its "Build systems" page:
# numpy, opencv, pyyaml, protobuf, pika), pinned as our runtime image installs them.
PLATFORM_BASE = {
    "numpy": "2.4.6",
    "opencv-python-headless": "5.1.0.95",
    "pyyaml": "6.0.4",
    "protobuf": "7.36.2",
    "pika": "1.4.4",
}
# Other distributions of cv2: on top of the base's they would replace its files.
_OPENCV = {"opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless", "opencv-python-headless"}
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
_PINNED = re.compile(r"^==\s*[A-Za-z0-9][A-Za-z0-9.+!_-]*\s*(;.*)?$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    """One requirement line of ``src/requirements.txt``."""

    line: int
    text: str
    name: str  # normalised (PEP 503); "" for an option line (-r, --index-url, ...)
    pinned: bool


def read_requirements(file: Path) -> list[Requirement]:
    """The requirement lines of ``file`` (none if it does not exist): blank lines and
    comments are no requirement, so an empty or comment-only file asks for nothing."""
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith("-"):
            out.append(Requirement(i, line, "", True))
            continue
        m = _NAME.match(line)
        name = _normal(m.group(1)) if m else line
        spec = m.group(3).strip() if m else ""
        out.append(Requirement(i, line, name, bool(_PINNED.match(spec)) or "@" in spec))
    return out


def has_requirements(component_dir: Path) -> bool:
    """True if ``src/requirements.txt`` asks for something (the component needs its own image)."""
    return bool(read_requirements(component_dir / "src" / "requirements.txt"))


def requirement_notes(file: Path) -> list[str]:
    """Warnings for ``file`` as ``file:line: ...``: a requirement not pinned with ``==``
    (the platform's rule), and one the runtime image already has."""
    notes = []
    for r in read_requirements(file):
        where = f"{file}:{r.line}"
        if not r.name:
            continue
        if r.name in PLATFORM_BASE:
            notes.append(
                f"{where}: {r.text!r}: the runtime image already has {r.name}=={PLATFORM_BASE[r.name]}, "
                "as the platform's does; the platform's docs say not to list it (remove the line)"
            )
            continue
        if r.name in _OPENCV:
            notes.append(
                f"{where}: {r.text!r}: the runtime image already has opencv (opencv-python-headless=="
                f"{PLATFORM_BASE['opencv-python-headless']}); a second opencv distribution would "
                "overwrite its cv2 (remove the line)"
            )
            continue
        if not r.pinned:
            notes.append(
                f"{where}: {r.text!r} is not pinned: the platform's rule is an exact version with "
                f"'==' (for example {r.name}==X.Y.Z), so a build resolves the same tree every day"
            )
    return notes


# build_system keys: "<generation>-<part>-<part>...", for example 2-cuda12.8-torch2.8-onnxrtgpu1.22.
_KEY = re.compile(r"^\d+(-[a-z][a-z0-9.]*)+$")
_PARTS = {
    "cuda": "CUDA",
    "torch": "PyTorch",
    "onnxrtgpu": "onnxruntime-gpu",
    "onnxrt": "onnxruntime",
    "tensorrt": "TensorRT",
    "trt": "TensorRT",
    "tf": "TensorFlow",
    "jax": "JAX",
    "cpu": "CPU only",
}


def build_system_note(value: object) -> tuple[str | None, str]:
    """(error, note) for a component.yml ``build_system`` value: an error if it is not a
    key of the platform's form; else a note naming the image it maps to here."""
    if not isinstance(value, str) or not _KEY.match(value):
        return (
            f"expected a build_system key like '2-cuda12.8-torch2.8-onnxrtgpu1.22' (a generation, then "
            f"'-'-joined stack parts), got {value!r}"
        ), ""
    stack = []
    for part in value.split("-")[1:]:
        m = re.match(r"^([a-z]+)([0-9.]*)$", part)
        name = _PARTS.get(m.group(1), m.group(1)) if m else part
        version = m.group(2) if m else ""
        stack.append(f"{name} {version}".strip())
    gpu = any(p.startswith(("cuda", "onnxrtgpu", "tensorrt", "trt")) for p in value.split("-")[1:])
    extra = [s for s in stack if not s.startswith("CPU")]
    note = (
        f"build_system {value} ({', '.join(stack)}): here the component runs on the pipelogic runtime image "
        "(CPU, Python 3.11, with numpy, opencv, pyyaml, protobuf and pika, as the platform's base)"
    )
    if extra:
        note += (
            f"; {', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not in it: list the Python packages "
            "in src/requirements.txt for the component's image"
        )
    if gpu:
        note += "; no GPU is used here"
    return None, note
