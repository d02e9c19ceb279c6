"""Wheels for images, made on the host (``pip`` inside a build may have no route to an
index): the runtime's dependencies for the base's Python, binary only, and the pipelogic
wheel built from this source tree; and the fingerprint of what an image is built from."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from pipelogic.containers._docker import Log, say
from pipelogic.errors import ContainerError
from pipelogic.porting import PLATFORM_BASE

__all__ = ["VARIANTS", "dependency_wheels", "image_fingerprint", "package_wheel", "source_root"]

# Two variants (docs/containers.md): the default carries what the platform's runtime image
# carries (numpy, opencv, pyyaml, protobuf, pika), so a component ported from it imports
# what it expects; "slim" carries only pipelogic's own dependencies.
VARIANTS = {"full": [f"{name}=={version}" for name, version in PLATFORM_BASE.items()], "slim": []}
_SOURCE_DIRS = ("pipelogic", "backend_stub")
_SOURCE_FILES = ("pyproject.toml", "README.md")


def source_root() -> Path:
    """The source tree this pipelogic was installed from (an editable install or a checkout)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "docker" / "Dockerfile").is_file():
        raise ContainerError(
            f"the runtime image is built from a pipelogic source checkout (pyproject.toml and "
            f"docker/Dockerfile beside the package); {root} is not one"
        )
    return root


def _requirements() -> list[str]:
    reqs = metadata.requires("pipelogic") or []
    return sorted(r for r in reqs if "extra ==" not in r)


def _wheel_platforms() -> list[str]:
    arch = platform.machine() or "x86_64"
    tags = ["manylinux2014", "manylinux_2_17", "manylinux_2_24", "manylinux_2_28", "manylinux_2_31", "manylinux_2_34"]
    return [f"{t}_{arch}" for t in tags] + [f"linux_{arch}"]


def dependency_wheels(cache: Path, python: str, log: Log = say, variant: str = "full") -> Path:
    """Binary wheels of the runtime's dependencies for ``python`` (``X.Y``) and the image
    ``variant``, cached in ``cache``: downloaded again only when the requirements change."""
    reqs = _requirements() + VARIANTS[variant]
    folder = cache / f"deps-py{python.replace('.', '')}-{variant}"
    stamp = folder / "requirements.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == reqs and any(folder.glob("*.whl")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    log(f"downloading wheels for Python {python}: {', '.join(reqs)}")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "-d",
        str(folder),
    ]
    for p in _wheel_platforms():
        cmd += ["--platform", p]
    proc = subprocess.run([*cmd, *reqs], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        if any(folder.glob("*.whl")):
            log(f"warning: pip download failed; using the wheels already in {folder}")
            return folder
        raise ContainerError(
            f"cannot download the runtime's wheels (pip exit code {proc.returncode}):\n{proc.stderr.strip()[-2000:]}"
        )
    stamp.write_text(json.dumps(reqs))
    return folder


def package_wheel(root: Path, dest: Path) -> Path:
    """Build the pipelogic wheel from ``root`` into ``dest`` (emptied first)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps", "-w", str(dest)]
    try:  # the build backend already installed here: no index needed
        import setuptools  # noqa: F401
        import wheel  # noqa: F401

        cmd.append("--no-build-isolation")
    except ImportError:
        pass
    # pip builds in place for a local directory; keep the checkout free of build/ leftovers.
    with tempfile.TemporaryDirectory(prefix="pipelogic-src-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(
            root,
            src,
            ignore=shutil.ignore_patterns(
                ".git", "build", "dist", "*.egg-info", "__pycache__", ".pipelogic", "tests", "examples", ".venv"
            ),
        )
        proc = subprocess.run([*cmd, str(src)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ContainerError(
            f"cannot build the pipelogic wheel (pip exit code {proc.returncode}):\n{proc.stderr.strip()[-2000:]}"
        )
    wheels = list(dest.glob("pipelogic-*.whl"))
    if len(wheels) != 1:
        raise ContainerError(f"expected one pipelogic wheel in {dest}, found {len(wheels)}")
    return wheels[0]


def _files(root: Path) -> Iterable[Path]:
    for d in _SOURCE_DIRS:
        for p in sorted((root / d).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"):
                yield p
    for f in _SOURCE_FILES:
        if (root / f).is_file():
            yield root / f


def image_fingerprint(root: Path, base_id: str, deps: Path) -> str:
    """What the runtime image is made of: the Dockerfile, the base, the wheels, the source."""
    h = hashlib.sha256()
    h.update((root / "docker" / "Dockerfile").read_bytes())
    h.update(base_id.encode())
    for w in sorted(deps.glob("*.whl")):
        h.update(w.name.encode())
    for p in _files(root):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:24]
