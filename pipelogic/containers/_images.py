"""Images: the runtime image (broker and workers) and images of users' components.

Everything goes through the docker SDK. Python packages are installed into images from
wheels made on the host (``pip`` inside a build may have no route to an index), so a
machine without a registry builds every image from nothing:

1. the base: ``python:3.11-slim`` when the engine has it or can pull it, else a Debian
   root file system made by ``mmdebstrap`` from the host's apt sources and imported;
2. the wheels: the runtime's dependencies for the base's Python (``pip download``,
   binary wheels only) and the pipelogic wheel built from this source tree;
3. ``docker/Dockerfile`` on top, labelled with a fingerprint of all the above, so a second
   build with nothing changed is a no-op.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelogic.errors import ContainerError
from pipelogic.porting import PLATFORM_BASE, has_requirements

__all__ = [
    "DEFAULT_BASE",
    "LOCAL_BASE",
    "RUNTIME_IMAGE",
    "SLIM_IMAGE",
    "build_component_image",
    "build_runtime_image",
    "docker_client",
    "ensure_base",
    "image_fingerprint",
]

VERSION = metadata.version("pipelogic")
# Two variants (docs/containers.md): the default carries what the platform's runtime image
# carries (numpy, opencv, pyyaml, protobuf, pika), so a component ported from it imports
# what it expects; "slim" carries only pipelogic's own dependencies.
RUNTIME_IMAGE = f"pipelogic/runtime:{VERSION}"
SLIM_IMAGE = f"pipelogic/runtime:{VERSION}-slim"
VARIANTS = {"full": [f"{name}=={version}" for name, version in PLATFORM_BASE.items()], "slim": []}
VARIANT_LABEL = "org.pipelogic.variant"
DEFAULT_BASE = "python:3.11-slim"
LOCAL_BASE = "pipelogic/base:bookworm"
FINGERPRINT_LABEL = "org.pipelogic.fingerprint"
_WORKER_UID = "10001:10001"
_SOURCE_DIRS = ("pipelogic", "backend_stub")
_SOURCE_FILES = ("pyproject.toml", "README.md")
# Left out of the local base image: documentation, manuals and translations (about 50 MB).
_DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")

Log = Callable[[str], None]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def docker_client() -> Any:
    """A docker SDK client for the engine in the environment (DOCKER_HOST or the socket)."""
    try:
        from docker.errors import DockerException

        import docker
    except ImportError:
        raise ContainerError(
            "building images needs the docker SDK, which is not installed here: pip install 'pipelogic[containers]'"
        ) from None
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except DockerException as exc:
        raise ContainerError(f"no Docker engine answers ({exc}); is it running, and may this user use it?") from None
    return client


def _image(client: Any, ref: str) -> Any | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None


# -- the base image --------------------------------------------------------------------------


def ensure_base(client: Any, base: str | None = None, offline: bool = False, log: Log = _say) -> str:
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


def build_local_base(client: Any, tag: str, log: Log = _say) -> None:
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


def _image_python(client: Any, image: str) -> str | None:
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


def _base_python(client: Any, base: str) -> str:
    """``X.Y`` of the base image's python3 (wheels must match it)."""
    out = client.containers.run(
        base, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], remove=True
    )
    return bytes(out).decode().strip()


# -- wheels ------------------------------------------------------------------------------------


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


def dependency_wheels(cache: Path, python: str, log: Log = _say, variant: str = "full") -> Path:
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


# -- building ----------------------------------------------------------------------------------


_OUTPUT_LINES = 25  # of a failed step's output, shown with its error
# What pip says when no package index can be reached (DNS, network, TLS, a proxy).
_NO_INDEX = (
    "Could not find a version that satisfies",
    "No matching distribution found",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Max retries exceeded",
    "SSLError",
    "ProxyError",
    "Failed to establish a new connection",
    "CERTIFICATE_VERIFY_FAILED",
)


def _build(client: Any, tag: str, log: Log, hint: Callable[[str], str] | None = None, **build_args: Any) -> None:
    """docker build through the SDK (``build_args`` go to ``APIClient.build``), streaming
    the steps to ``log``; a failed step raises ContainerError with the engine's message,
    the step's last lines of output (pip's, say) and ``hint(output)``."""
    from collections import deque

    from docker.errors import APIError

    output: deque[str] = deque(maxlen=_OUTPUT_LINES)
    try:
        for chunk in client.api.build(tag=tag, rm=True, forcerm=True, decode=True, **build_args):
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                said = "\n".join(f"  | {line}" for line in output)
                extra = hint("\n".join(output)) if hint is not None else ""
                raise ContainerError(f"building {tag} failed: {detail.strip()}" + (f"\n{said}" if said else "") + extra)
            text = str(chunk.get("stream", "")).rstrip()
            if text.startswith("Step "):
                log(f"  {text}")
                output.clear()  # what the failing step said, not the steps before it
            elif text:  # the step's own words, not the engine's bookkeeping
                output.extend(
                    line
                    for line in text.splitlines()
                    if line.strip() and not line.startswith((" ---> ", "Removing intermediate container"))
                )
    except APIError as exc:
        raise ContainerError(f"building {tag} failed: {exc.explanation or exc}") from None


def _wheels_hint(python: Callable[[], str | None]) -> Callable[[str], str]:
    """For a component build without --wheels: when pip could not reach an index, how to
    install from wheels instead (``python()``: the image's Python, asked only then)."""

    def hint(output: str) -> str:
        if not any(sign in output for sign in _NO_INDEX):
            return ""
        version = python()
        arch = platform.machine() or "x86_64"
        return (
            "\nno package index was reachable from the build (or it lacks that version): build with "
            "--wheels DIR, DIR filled where an index is reachable with\n"
            f"  pip download --only-binary :all:{f' --python-version {version}' if version else ''} "
            f"--platform manylinux2014_{arch} -d DIR -r src/requirements.txt"
            + (f"\n(the image's Python is {version})" if version else "")
        )

    return hint


def build_runtime_image(
    base: str | None = None,
    offline: bool = False,
    rebuild: bool = False,
    tag: str | None = None,
    cache: Path | None = None,
    log: Log = _say,
    variant: str = "full",
) -> str:
    """Build (or find up to date) the runtime image of ``variant`` ("full" or "slim");
    returns its tag. Also tags ``:latest`` (``:slim`` for the slim one)."""
    if variant not in VARIANTS:
        raise ContainerError(f"unknown runtime image variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    tag = tag or (SLIM_IMAGE if variant == "slim" else RUNTIME_IMAGE)
    client = docker_client()
    root = source_root()
    cache = cache or root / "build" / "docker"
    base_ref = ensure_base(client, base, offline, log)
    base_img = client.images.get(base_ref)
    python = base_img.labels.get("org.pipelogic.python") if base_img.labels else None
    python = python or _base_python(client, base_ref)
    deps = dependency_wheels(cache / "wheels", python, log, variant)
    fp = image_fingerprint(root, base_img.id, deps)
    have = _image(client, tag)
    if have is not None and not rebuild and (have.labels or {}).get(FINGERPRINT_LABEL) == fp:
        log(f"{tag} is up to date ({base_ref}, fingerprint {fp})")
        _tag_latest(client, tag, variant)
        return tag
    with tempfile.TemporaryDirectory(prefix="pipelogic-image-") as tmp:
        ctx = Path(tmp)
        shutil.copy(root / "docker" / "Dockerfile", ctx / "Dockerfile")
        shutil.copytree(deps, ctx / "deps", ignore=shutil.ignore_patterns("*.json"))
        package_wheel(root, ctx / "pkg")
        log(f"building {tag} ({variant}) on {base_ref} (Python {python})")
        _build(
            client,
            tag,
            log,
            path=str(ctx),
            buildargs={"BASE_IMAGE": base_ref},
            labels={FINGERPRINT_LABEL: fp, PYTHON_LABEL: python, VARIANT_LABEL: variant},
        )
    _tag_latest(client, tag, variant)
    return tag


def _tag_latest(client: Any, tag: str, variant: str) -> None:
    repo = tag.rsplit(":", 1)[0]
    client.images.get(tag).tag(repo, "slim" if variant == "slim" else "latest")


def component_dockerfile(runtime: str, name: str, requirements: bool, wheels: bool) -> str:
    """The Dockerfile of a component image: the runtime plus the component at /component."""
    lines = [
        f"FROM {runtime}",
        "USER root",
        "COPY component/ /component/",
    ]
    if requirements:
        if wheels:
            lines += [
                "COPY wheels/ /tmp/wheels/",
                "RUN pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /tmp/wheels "
                "-r /component/src/requirements.txt && rm -rf /tmp/wheels",
            ]
        else:
            lines.append(
                "RUN pip install --no-cache-dir --disable-pip-version-check -r /component/src/requirements.txt"
            )
    lines += [
        "RUN python3 -m compileall -q /component/src || true",
        f"USER {_WORKER_UID}",
        "ENV PIPELOGIC_COMPONENT_DIR=/component",
        f'LABEL org.pipelogic.component="{name}"',
        'CMD ["worker", "/component"]',
        "",
    ]
    return "\n".join(lines)


def _add_tree(tar: tarfile.TarFile, src: Path, arcname: str) -> None:
    skip = {"__pycache__", ".pipelogic", ".git", ".pytest_cache", "out"}

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if set(Path(info.name).parts) & skip:
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    tar.add(str(src), arcname=arcname, filter=keep)


def build_component_image(
    component_dir: str | Path,
    tag: str | None = None,
    wheels: str | Path | None = None,
    runtime: str = RUNTIME_IMAGE,
    log: Log = _say,
    tag_prefix: str = "pipelogic/",
) -> str:
    """Build an image that runs the component in ``component_dir`` with no mount: the
    runtime image (``runtime``), the component at ``/component``, and
    ``src/requirements.txt`` installed (from ``wheels``, a folder of wheel files, when
    given; else from the index the engine reaches). ``tag`` defaults to
    ``<tag_prefix><component name>:latest``. Returns the tag."""
    from pipelogic.component import load_component

    spec = load_component(component_dir)
    cdir = spec.directory
    tag = tag or f"{tag_prefix}{spec.name}:latest"
    client = docker_client()
    if _image(client, runtime) is None:
        raise ContainerError(f"the runtime image {runtime} is not built yet: run scripts/build-images first")
    has_reqs = has_requirements(cdir)
    wheel_dir = Path(wheels).resolve() if wheels else None
    if wheel_dir is not None and not wheel_dir.is_dir():
        raise ContainerError(f"--wheels {wheel_dir}: not a directory")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        df = component_dockerfile(runtime, spec.name, has_reqs, wheel_dir is not None).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(df)
        tar.addfile(info, io.BytesIO(df))
        _add_tree(tar, cdir, "component")
        if has_reqs and wheel_dir is not None:
            _add_tree(tar, wheel_dir, "wheels")
    buf.seek(0)
    log(f"building {tag}: component {spec.name} from {cdir} on {runtime}")
    hint = _wheels_hint(lambda: _image_python(client, runtime)) if has_reqs and wheel_dir is None else None
    _build(client, tag, log, hint, fileobj=buf, custom_context=True)
    return tag


def env_without_python() -> dict[str, str]:
    """The environment for system programs (docker-compose) that must not see our venv."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
