"""``pipelogic compose``: a compose file for a pipeline (plain code: pipeline in, text out).

The file runs the pipeline as ``pipelogic up`` would, one container per process:

- ``broker``: the runtime image running ``pipelogic broker``, with the built-in sources and
  sinks. The pipeline's folder (and each folder its ``allow_paths_outside`` lists) is
  bind-mounted read-write, each component folder read-only, each at its place under
  ``/pipeline`` (its path from the folders' common root), so every relative path in
  pipeline.yml means what it means on the host and a file sink's output appears at its path
  beside the pipeline file; nothing else of the host is mounted. It starts as
  root only to take the uid of that folder's owner (``--run-as-owner-of``): the output is
  owned by the user who owns the pipeline, not by root. Its recovery store is on the named
  volume ``broker-state``: a broker container killed or restarted resumes the same run.
- one service per component vertex: the runtime image running ``pipelogic worker
  /component`` with the component folder mounted read-only there (or an image made by
  ``pipelogic image build``, which needs no mount), its state on a named volume at
  ``/state``, and ``PIPELOGIC_BROKER=tcp://broker:PORT``. A vertex with ``replicas: N``
  is ``deploy.replicas: N``: N containers, each a worker instance of the vertex
  (``docker-compose up --scale VERTEX=M`` or ``docker service scale`` change the count).

All services share one private network; no port is published (``docker-compose exec
broker pipelogic status`` reaches the broker from inside), but the web view's when asked
for (``--ui PORT``: on the host's loopback only; with it the file is for docker-compose, as
a Swarm service with ``endpoint_mode: dnsrr`` cannot publish a port). The file has a ``version:``
line and a ``deploy:`` section, so ``docker-compose up`` and ``docker stack deploy`` both
take it; the broker's ``endpoint_mode: dnsrr`` lets workers reach the data ports it picks
at run time (a Swarm virtual IP forwards declared ports only).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelogic.datapaths import data_paths
from pipelogic.errors import ContainerError
from pipelogic.files import FILES_DIR, GENERATED_DIR
from pipelogic.keys import worker_uids
from pipelogic.pipeline import Pipeline, Vertex
from pipelogic.porting import has_requirements

__all__ = ["ComposeOptions", "render_compose"]

BROKER_SERVICE = "broker"
PIPELINE_MOUNT = "/pipeline"
CACHE_MOUNT = "/cache"
COMPONENT_MOUNT = "/component"
KEYS_VOLUME = "keys"
KEYS_MOUNT = "/keys"
SHM_VOLUME = "shm"
SHM_MOUNT = "/shm"


@dataclass
class ComposeOptions:
    """What a compose file is made with."""

    runtime_image: str
    images: dict[str, str] = field(default_factory=dict)  # vertex -> an image with its component
    port: int = 5550
    connect_timeout_s: int = 300  # how long a worker waits for the broker before it exits
    command: str = ""  # the command line that made the file, for its header
    keys: bool = True  # CurveZMQ between the containers (docs/security.md)
    shared_memory: str = ""  # the size of a tmpfs volume every container maps slots in ("": none)
    ui_port: int = 0  # the broker's web view, published on the host's loopback at this port (0: none)


def _broker_folders(p: Pipeline) -> tuple[list[Path], list[Path]]:
    """The host folders the broker needs: (read-write, read-only). It writes in the
    pipeline's folder (file sinks, dead letters; `parse_pipeline` keeps every data path in
    it) and in the folders ``allow_paths_outside`` lists; it only reads its components'
    folders (each component.yml). A folder inside another it already sees is not listed."""
    rw = _outermost([p.file.resolve().parent, *p.outside])
    ro = _outermost([v.component.directory.resolve() for v in p.vertices.values() if v.component is not None])
    ro = [d for d in ro if not any(d.is_relative_to(w) for w in rw)]
    return rw, ro


def _outermost(folders: list[Path]) -> list[Path]:
    out: list[Path] = []
    for f in sorted(set(folders), key=lambda x: (len(x.parts), str(x))):
        if not any(f.is_relative_to(o) for o in out):
            out.append(f)
    return out


def _file_mounts(p: Pipeline, v: Vertex, out_dir: Path, env: dict[str, str]) -> list[str]:
    """Bound files read-only at /files/<slot>, and the vertex's output folder at
    /generated if it generates files; the worker maps its config paths to them."""
    assert v.component is not None
    mounts = []
    slots = v.component.file_slots.values()
    for slot in slots:
        value = v.config.get(slot.config_key)
        if not slot.generated and not slot.target and isinstance(value, str):
            mounts.append(f"{_relative(Path(value), out_dir)}:{FILES_DIR}/{slot.name}:ro")
    if mounts:
        env["PIPELOGIC_FILES_DIR"] = FILES_DIR
    if any(slot.generated for slot in slots):
        mounts.append(f"{_relative(p.directory.resolve() / 'out' / v.name, out_dir)}:{GENERATED_DIR}")
        env["PIPELOGIC_GENERATED_DIR"] = GENERATED_DIR
    return mounts


def _relative(target: Path, start: Path) -> str:
    rel = os.path.relpath(target, start)
    return "." if rel == "." else (rel if rel.startswith("..") else f"./{rel}")


def render_compose(pipeline: Pipeline, out_file: Path, opts: ComposeOptions) -> str:
    """The compose file for ``pipeline``, to be written at ``out_file`` (host paths in it
    are relative to that file's folder). Raises ContainerError when a vertex cannot run
    from the runtime image alone."""
    out_dir = out_file.resolve().parent
    for key, value in data_paths(pipeline.vertices):
        # The broker's (a `files:` slot is mounted at a path of its own in its worker).
        if key[2] != "files" and Path(value).is_absolute():
            raise ContainerError(
                f"{pipeline.file}: {'.'.join(key)}: {value} is absolute; the broker's container sees the "
                f"pipeline's folders under {PIPELINE_MOUNT}, so give it relative to pipeline.yml"
            )
    rw, ro = _broker_folders(pipeline)
    # Each folder appears at /pipeline/<its path from the folders' common root>, so every
    # path in pipeline.yml (relative, or absolute under an allowed folder) means inside what
    # it means outside; nothing else of the host is mounted.
    root = Path(os.path.commonpath([str(x) for x in (*rw, *ro)]))
    inside = Path(PIPELINE_MOUNT)
    pipe_in = inside / pipeline.file.resolve().relative_to(root)
    workers = [v for v in pipeline.vertices.values() if v.component is not None]
    if any(v.name == BROKER_SERVICE for v in workers):
        raise ContainerError(
            f"{pipeline.file}: vertex {BROKER_SERVICE!r} has the broker service's name; rename the vertex"
        )
    unknown = sorted(set(opts.images) - {v.name for v in workers})
    if unknown:
        raise ContainerError(
            f"--image names {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not a component vertex of {pipeline.name}"
        )

    shm_env: dict[str, str] = {}
    if opts.shared_memory:
        if not re.fullmatch(r"[1-9][0-9]*[kmg]?", opts.shared_memory.lower()):
            raise ContainerError(f"--shared-memory: expected a size such as 512m or 2g, got {opts.shared_memory!r}")
        # A private tmpfs: only this pipeline's containers mount it. With keys each worker
        # runs as a uid and group of its own and makes its pool's files 0660/0640: the
        # group is given to the consumers of its streams and the broker only, so the kernel
        # keeps every other container out of its frames (docs/security.md). Without keys
        # anyone on the network may act as a worker anyway, and the files are 0666.
        shm_env = {"PIPELOGIC_SHM_DIR": SHM_MOUNT, "PIPELOGIC_SHM_MODE": "660" if opts.keys else "666"}
    # No `delay`: docker-compose ignores it and warned once per service on every command.
    restart = {"condition": "on-failure"}
    uids = worker_uids([v.name for v in workers])
    services: dict[str, Any] = {
        BROKER_SERVICE: {
            "image": opts.runtime_image,
            "command": [
                "broker",
                str(pipe_in),
                "--listen",
                f"tcp://0.0.0.0:{opts.port}",
                "--state-dir",
                "/state",
                "--run-as-owner-of",
                str(pipe_in.parent),
            ],
            "user": "0:0",
            "volumes": [
                *(f"{_relative(d, out_dir)}:{inside / d.relative_to(root)}" for d in rw),
                *(f"{_relative(d, out_dir)}:{inside / d.relative_to(root)}:ro" for d in ro),
                f"{BROKER_SERVICE}-state:/state",
            ],
            "networks": ["pipeline"],
            "restart": "on-failure",
            "deploy": {"endpoint_mode": "dnsrr", "replicas": 1, "restart_policy": restart},
        }
    }
    volumes: dict[str, Any] = {f"{BROKER_SERVICE}-state": {}}
    if shm_env:
        volumes[SHM_VOLUME] = {
            "driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": f"size={opts.shared_memory.lower()},mode=1777"}
        }
        services[BROKER_SERVICE]["volumes"].append(f"{SHM_VOLUME}:{SHM_MOUNT}")
        services[BROKER_SERVICE]["environment"] = dict(shm_env)
    if opts.ui_port:
        # Served on every interface of the container (a published port arrives on its
        # network's), published on the host's loopback only; the broker says where.
        broker = services[BROKER_SERVICE]
        broker["command"] += ["--ui", f"0.0.0.0:{opts.ui_port}"]
        broker["ports"] = [f"127.0.0.1:{opts.ui_port}:{opts.ui_port}"]
        broker.setdefault("environment", {})["PIPELOGIC_UI_ON_HOST"] = f"127.0.0.1:{opts.ui_port}"
    if opts.keys:
        # The broker makes the keys on this volume when it first starts (as root, before it
        # drops to the pipeline owner's uid); each worker runs as a uid of its own and can
        # read its own secret only. `exec broker pipelogic status` uses the operator key.
        broker = services[BROKER_SERVICE]
        broker["command"] += ["--keys", KEYS_MOUNT, "--init-keys"]
        broker.setdefault("environment", {})["PIPELOGIC_KEYS"] = KEYS_MOUNT
        broker["volumes"].append(f"{KEYS_VOLUME}:{KEYS_MOUNT}")
        volumes[KEYS_VOLUME] = {}
    for v in workers:
        assert v.component is not None
        cdir = v.component.directory.resolve()
        svc: dict[str, Any] = {}
        if v.name in opts.images:
            svc["image"] = opts.images[v.name]
        elif has_requirements(cdir):
            raise ContainerError(
                f"vertex {v.name}: component {v.component.name} has src/requirements.txt, which the "
                f"runtime image does not have installed: build its image (pipelogic image build "
                f"{_relative(cdir, Path.cwd())} -t TAG) and pass --image {v.name}=TAG, or use --build"
            )
        else:
            svc["image"] = opts.runtime_image
            svc["command"] = ["worker", COMPONENT_MOUNT]
        svc["environment"] = {
            "PIPELOGIC_BROKER": f"tcp://{BROKER_SERVICE}:{opts.port}",
            "PIPELOGIC_COMPONENT": v.name,
            "PIPELOGIC_CONNECT_TIMEOUT_S": str(opts.connect_timeout_s),
        }
        mounts = [] if v.name in opts.images else [f"{_relative(cdir, out_dir)}:{COMPONENT_MOUNT}:ro"]
        mounts += _file_mounts(pipeline, v, out_dir, svc["environment"])
        volume = f"{v.name}-state"
        volumes[volume] = {}
        svc["volumes"] = [*mounts, f"{volume}:/state"]
        if v.component.cache:
            # worker.cache: model caches kept across runs, one volume per component.
            volumes[f"cache-{v.component.name}"] = {}
            svc["volumes"].append(f"cache-{v.component.name}:{CACHE_MOUNT}")
            svc["environment"]["PIPELOGIC_CACHE_DIR"] = CACHE_MOUNT
        if shm_env:
            svc["volumes"].append(f"{SHM_VOLUME}:{SHM_MOUNT}")
            svc["environment"].update(shm_env)
        if opts.keys:
            svc["user"] = f"{uids[v.name]}:{uids[v.name]}"
            producer_groups = sorted(
                {uids[p.vertex] for p in v.inputs if p is not None and p.vertex in uids} - {uids[v.name]}
            )
            if shm_env and producer_groups:
                svc["group_add"] = producer_groups  # it maps the slots of the producers it consumes
            svc["environment"]["PIPELOGIC_CURVE_KEY"] = f"{KEYS_MOUNT}/workers/{v.name}.key_secret"
            svc["environment"]["PIPELOGIC_CURVE_SERVER_KEY"] = f"{KEYS_MOUNT}/broker.key"
            svc["volumes"].append(f"{KEYS_VOLUME}:{KEYS_MOUNT}:ro")
        svc["networks"] = ["pipeline"]
        svc["depends_on"] = [BROKER_SERVICE]
        svc["restart"] = "on-failure"
        # One container per instance: `replicas: N` (or `--scale` on this file's command) is
        # N containers, each an instance the broker deals ticks to. They share the state
        # volume: the first holds its lock, the others join as more instances.
        svc["deploy"] = {"replicas": v.replicas, "restart_policy": restart}
        services[v.name] = svc

    doc: dict[str, Any] = {"version": "3.8", "services": services, "networks": {"pipeline": {}}, "volumes": volumes}
    header = [
        f"# pipeline {pipeline.name}: generated by `{opts.command or 'pipelogic compose'}`.",
        "# Edit pipeline.yml and generate again rather than editing this file.",
        "#   docker-compose up                             run it to the end (output beside pipeline.yml)",
        "#   docker-compose exec broker pipelogic status   watch it (no port is published)",
        "#   docker stack deploy -c THIS_FILE NAME         the same on a Swarm"
        if not any("group_add" in svc for svc in services.values())
        else "# Not for `docker stack deploy`, which refuses group_add (docker/cli#3777): for a Swarm,\n"
        "# generate without --shared-memory.",
        "# CurveZMQ is on: the broker makes the keys on the `keys` volume (--no-keys turns it off)."
        if opts.keys
        else "# Without keys: any container on the network can act as a worker (docs/security.md).",
    ]
    return "\n".join(header) + "\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120)


class _Dumper(yaml.SafeDumper):
    """Readable compose YAML: no anchors, short lists on one line, and strings holding a
    colon quoted (``"0:0"`` and ports must never be read as YAML 1.1 base-60 numbers)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _seq(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(isinstance(x, str) for x in data) and sum(len(x) + 2 for x in data) < 90
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"' if ":" in data else None)


_Dumper.add_representer(list, _seq)
_Dumper.add_representer(str, _str)
