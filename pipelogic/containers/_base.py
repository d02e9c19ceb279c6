"""The base image under the runtime image: ``python:3.11-slim`` when the engine has it or can
pull it, else a Debian root file system made by ``mmdebstrap`` from the host's apt sources
and imported (no registry needed), and the Python version of an image."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pipelogic.containers._docker import Log, _image, say
from pipelogic.errors import ContainerError

__all__ = [
    "DEFAULT_BASE",
    "LOCAL_BASE",
    "PYTHON_LABEL",
    "apt_sources",
    "base_python",
    "build_local_base",
    "ensure_base",
    "image_python",
]

DEFAULT_BASE = "python:3.11-slim"
LOCAL_BASE = "pipelogic/base:bookworm"
# Left out of the local base image: documentation, manuals and translations (about 50 MB).
_DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")


def ensure_base(client: Any, base: str | None = None, offline: bool = False, log: Log = say) -> str:
    """The base image to build on, present in the engine.

    ``base`` given: that image, pulled if missing. Otherwise ``python:3.11-slim`` if the
    engine has it, else the local Debian base if it was built before, else
    ``python:3.11-slim`` pulled (not with ``offline``), else the local base built now."""
    from docker.errors import APIError

    def pulled(ref: str) -> bool:
        if _image(client, ref) is not None:
            return True
        repo, _, tag = ref.partition(":")
        try:
            log(f"pulling {ref}")
            client.images.pull(repo, tag=tag or "latest")
            return True
        except APIError as exc:
            log(f"cannot pull {ref}: {exc.explanation or exc}")
            return False

    if base:
        if not pulled(base):
            raise ContainerError(f"base image {base} is not in the engine and cannot be pulled")
        return base
    if _image(client, DEFAULT_BASE) is not None:
        return DEFAULT_BASE
    if _image(client, LOCAL_BASE) is not None:  # built here before: the engine had no registry
        return LOCAL_BASE
    if not offline and pulled(DEFAULT_BASE):
        return DEFAULT_BASE
    build_local_base(client, LOCAL_BASE, log)
    return LOCAL_BASE


def apt_sources(root: Path = Path("/")) -> list[Path]:
    """The host's enabled apt source files (one-line and deb822 forms)."""
    etc = root / "etc" / "apt"
    files = [etc / "sources.list"] if (etc / "sources.list").is_file() else []
    d = etc / "sources.list.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources") and p.is_file())
    return [
        f
        for f in files
        if any(line.strip() and not line.lstrip().startswith("#") for line in f.read_text().splitlines())
    ]


def _codename(root: Path = Path("/")) -> str:
    try:
        text = (root / "etc" / "os-release").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def build_local_base(client: Any, tag: str, log: Log = say) -> None:
    """A minimal Debian with python3 and venv, from the host's apt sources (no registry)."""
    tool = shutil.which("mmdebstrap")
    if tool is None:
        raise ContainerError(
            f"no base image: {DEFAULT_BASE} cannot be pulled and mmdebstrap is not installed "
            "(apt-get install mmdebstrap), or pass --base IMAGE"
        )
    sources = apt_sources()
    suite = _codename()
    if not sources or not suite:
        raise ContainerError(
            "no base image: this host has no apt sources (or no VERSION_CODENAME) to build one from; pass --base IMAGE"
        )
    log(f"building the base image {tag} with mmdebstrap ({suite}, from {', '.join(map(str, sources))})")
    cmd = [tool, "--variant=minbase", "--include=python3,python3-venv", "--format=tar", "--quiet"]
    cmd += [f"--dpkgopt=path-exclude={p}" for p in _DPKG_EXCLUDES]
    cmd += ["--dpkgopt=path-include=/usr/share/doc/*/copyright", suite, "-", *map(str, sources)]
    with tempfile.TemporaryDirectory(prefix="pipelogic-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        with rootfs.open("wb") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            raise ContainerError(f"mmdebstrap failed (exit code {proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
        repo, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(rootfs), repository=repo, tag=version or "latest", changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]']
        )
    if _image(client, tag) is None:
        raise ContainerError(f"docker import did not produce {tag}")


PYTHON_LABEL = "org.pipelogic.python"  # X.Y of the image's python3 (what wheels for it must match)


def image_python(client: Any, image: str) -> str | None:
    """``X.Y`` of ``image``'s python3: its label, else asked of the image; None if unknown."""
    found = _image(client, image)
    label = ((found.labels if found is not None else None) or {}).get(PYTHON_LABEL)
    if label:
        return str(label)
    try:
        out = client.containers.run(
            image, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"], entrypoint="python3", remove=True
        )
        return bytes(out).decode().strip() or None
    except Exception:  # noqa: BLE001 - only a hint depends on it
        return None


def base_python(client: Any, base: str) -> str:
    """``X.Y`` of the base image's python3 (wheels must match it)."""
    out = client.containers.run(
        base, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], remove=True
    )
    return bytes(out).decode().strip()
