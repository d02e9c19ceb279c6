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

Step 1 is :mod:`._base`, step 2 :mod:`._wheels`, the SDK client :mod:`._docker`; this
module builds the runtime image and component images from them.
"""

from __future__ import annotations

import io
import os
import platform
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelogic.containers._base import DEFAULT_BASE, LOCAL_BASE, PYTHON_LABEL, base_python, ensure_base, image_python
from pipelogic.containers._docker import Log, _image, docker_client, say
from pipelogic.containers._wheels import VARIANTS, dependency_wheels, image_fingerprint, package_wheel, source_root
from pipelogic.errors import ContainerError
from pipelogic.porting import has_requirements

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

RUNTIME_IMAGE = f"pipelogic/runtime:{VERSION}"
SLIM_IMAGE = f"pipelogic/runtime:{VERSION}-slim"
VARIANT_LABEL = "org.pipelogic.variant"
FINGERPRINT_LABEL = "org.pipelogic.fingerprint"
_WORKER_UID = "10001:10001"


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
    log: Log = say,
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
    python = python or base_python(client, base_ref)
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
    """The Dockerfile of a component image: the runtime plus the component at /component.

    With ``wheels``, the requirements are installed from them in a build stage of their own
    (into a prefix of the runtime's environment, so what the runtime already has is not
    installed again) and only what was installed is copied out: the wheels folder never
    becomes a layer of the image."""
    lines = []
    if requirements and wheels:
        lines += [
            f"FROM {runtime} AS requirements",
            "USER root",
            "COPY wheels/ /tmp/wheels/",
            "COPY component/src/requirements.txt /tmp/requirements.txt",
            "RUN pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /tmp/wheels "
            "--prefix /tmp/added -r /tmp/requirements.txt && mkdir -p /tmp/added",
            "",
        ]
    lines += [
        f"FROM {runtime}",
        "USER root",
        "COPY component/ /component/",
    ]
    if requirements:
        if wheels:
            lines.append("COPY --from=requirements /tmp/added/ /opt/pipelogic/")
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
    log: Log = say,
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
    hint = _wheels_hint(lambda: image_python(client, runtime)) if has_reqs and wheel_dir is None else None
    _build(client, tag, log, hint, fileobj=buf, custom_context=True)
    return tag


def env_without_python() -> dict[str, str]:
    """The environment for system programs (docker-compose) that must not see our venv."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
