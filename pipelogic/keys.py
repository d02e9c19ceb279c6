"""CurveZMQ keys: the folder ``pipelogic keys`` makes, and the credentials a client uses.

A key folder holds::

    broker.key  broker.key_secret          the broker's pair
    workers/NAME.key  NAME.key_secret      one pair per worker, authorised for the vertices
                                           named in the public file's metadata
    operators/NAME.key  NAME.key_secret    one pair per operator (status, config set, tap)

Files are ZeroMQ certificates (pyzmq's ``zmq.auth`` format); secret files are 0600 and the
folder 0700. Revoking a key is deleting its files: the broker rereads the folder within a
second and drops every connection of that key.

A client (a worker, ``pipelogic status``) finds its credentials in the environment:

- ``PIPELOGIC_CURVE_SERVER_KEY``: the broker's public certificate (``broker.key``);
- ``PIPELOGIC_CURVE_KEY``: its own secret certificate (``NAME.key_secret``);
- or ``PIPELOGIC_KEYS=DIR``, a key folder: the broker's public key from there, and the
  secret of the worker named by ``PIPELOGIC_COMPONENT`` or of the operator named by
  ``PIPELOGIC_OPERATOR`` (the only operator key, if there is one).

With none of these set, clients speak plain TCP, as the broker does without keys.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth

from pipelogic.errors import KeyFileError, KeyFileMissing

__all__ = [
    "WORKER_UID_BASE",
    "ClientKeys",
    "KeyFileError",
    "KeyFileMissing",
    "KeyInfo",
    "init_container_keys",
    "worker_uids",
    "client_keys",
    "create_broker_key",
    "create_key",
    "list_keys",
    "read_public",
]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
ROLES = ("workers", "operators")


WORKER_UID_BASE = 20000
"""In containers each worker runs as a uid of its own, from here, so it can read only its
own secret key (:func:`worker_uids`; the compose file and the broker agree on them)."""


def worker_uids(vertices: list[str]) -> dict[str, int]:
    """The uid each component vertex's container runs as (by sorted name)."""
    return {v: WORKER_UID_BASE + i for i, v in enumerate(sorted(vertices))}


def init_container_keys(
    folder: Path, workers: dict[str, int], broker_uid: int, operator: str = "compose"
) -> list[Path]:
    """Run as root in the broker's container: make the keys a compose run needs that are
    missing (the broker's, one per worker vertex, an operator's) on the shared keys volume.
    Each secret is 0400 and owned by who uses it: a worker's by that worker's uid
    (``workers``), the broker's by ``broker_uid``, the operator's by root (``docker-compose
    exec broker pipelogic status``). Folders are 0755: public files are public. Returns
    the public files made."""
    folder = Path(folder)
    made = []
    if not (folder / "broker.key").is_file():
        made.append(create_broker_key(folder))
    for vertex, uid in sorted(workers.items()):
        if not (folder / "workers" / f"{vertex}.key").is_file():
            made.append(create_key(folder, "workers", vertex, [vertex]))
        secret = folder / "workers" / f"{vertex}.key_secret"
        os.chown(secret, uid, uid)
        os.chmod(secret, 0o400)
    if not (folder / "operators" / f"{operator}.key").is_file():
        made.append(create_key(folder, "operators", operator))
    os.chmod(folder / "operators" / f"{operator}.key_secret", 0o400)
    os.chown(folder / "broker.key_secret", broker_uid, broker_uid)
    os.chmod(folder / "broker.key_secret", 0o400)
    for d in (folder, folder / "workers", folder / "operators"):
        os.chmod(d, 0o755)
    return made


@dataclass(frozen=True)
class KeyInfo:
    """A public key from a key folder: whose it is and what it may do."""

    name: str
    role: str  # "broker", "worker" or "operator"
    public: bytes  # z85
    vertices: tuple[str, ...] = ()
    path: Path = field(default=Path())


@dataclass(frozen=True)
class ClientKeys:
    """What a client socket needs for CURVE: its pair and the broker's public key (z85)."""

    public: bytes
    secret: bytes
    server: bytes
    source: str  # where they came from, for error messages


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise KeyFileError(f"key name {name!r}: use letters, digits, '.', '_' and '-' (at most 100)")


def _write_pair(folder: Path, name: str, metadata: dict[str, str] | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    public = folder / f"{name}.key"
    if public.exists() or (folder / f"{name}.key_secret").exists():
        raise KeyFileError(f"{public} exists already; delete it first to replace it (that revokes the old key)")
    old = os.umask(0o077)  # the secret file is never readable by others, not even for an instant
    try:
        pub, sec = zmq.auth.create_certificates(str(folder), name, metadata=metadata)
    finally:
        os.umask(old)
    os.chmod(sec, 0o600)
    if metadata:  # pyzmq writes metadata into the secret file only; the broker reads the public one
        lines = "".join(f"    {k} = {v}\n" for k, v in metadata.items())
        Path(pub).write_text(Path(pub).read_text().replace("metadata\n", "metadata\n" + lines, 1))
    os.chmod(pub, 0o644)
    return Path(pub)


def create_broker_key(folder: Path) -> Path:
    """Create the broker's pair in ``folder`` (which becomes a key folder)."""
    return _write_pair(Path(folder), "broker", None)


def create_key(folder: Path, role: str, name: str, vertices: list[str] | None = None) -> Path:
    """Create a worker's (``role="workers"``, authorised for ``vertices``, default its
    name) or an operator's pair; returns the public file."""
    if role not in ROLES:
        raise KeyFileError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    _check_name(name)
    meta = None
    if role == "workers":
        vs = vertices or [name]
        for v in vs:
            _check_name(v)
        meta = {"vertices": ",".join(vs)}
    return _write_pair(Path(folder) / role, name, meta)


def read_public(path: Path) -> tuple[bytes, dict[str, str]]:
    """A public certificate's key (z85) and metadata."""
    try:
        text = Path(path).read_text()
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: not a readable key file ({exc})") from None
    meta: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "\t")):
            section = line.strip()
            continue
        if section == "metadata" and "=" in line:
            k, _, v = line.strip().partition("=")
            meta[k.strip()] = v.strip().strip('"')
    return public, meta


def list_keys(folder: Path) -> list[KeyInfo]:
    """Every public key of a key folder (the broker's first)."""
    folder = Path(folder)
    if not (folder / "broker.key").is_file():
        raise KeyFileError(f"{folder}: not a key folder (no broker.key; `pipelogic keys init {folder}` makes one)")
    out = [KeyInfo("broker", "broker", read_public(folder / "broker.key")[0], (), folder / "broker.key")]
    for role in ROLES:
        for f in sorted((folder / role).glob("*.key")):
            public, meta = read_public(f)
            vertices = tuple(v for v in meta.get("vertices", "").split(",") if v) if role == "workers" else ()
            out.append(KeyInfo(f.stem, role[:-1], public, vertices, f))
    return out


def _load_secret(path: Path) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: not a readable secret key file ({exc})") from None
    if secret is None:
        raise KeyFileError(f"{path}: a public key file; the client needs its .key_secret")
    return public, secret


def client_keys(env: dict[str, str] | None = None) -> ClientKeys | None:
    """The CURVE credentials the environment gives this client, or None (plain TCP)."""
    env = dict(os.environ) if env is None else env
    server_file = env.get("PIPELOGIC_CURVE_SERVER_KEY")
    key_file = env.get("PIPELOGIC_CURVE_KEY")
    folder = env.get("PIPELOGIC_KEYS")
    if folder and not (server_file and key_file):
        d = Path(folder)
        server_file = server_file or str(d / "broker.key")
        if not key_file:
            vertex = env.get("PIPELOGIC_COMPONENT")
            operator = env.get("PIPELOGIC_OPERATOR")
            if operator:
                key_file = str(d / "operators" / f"{operator}.key_secret")
            elif vertex and (d / "workers" / f"{vertex}.key_secret").is_file():
                key_file = str(d / "workers" / f"{vertex}.key_secret")
            elif vertex:
                # A worker never stands in with an operator key: the broker would refuse it
                # as "not a worker key", which hides that its own key is gone.
                raise KeyFileError(
                    f"{d / 'workers' / vertex}.key_secret: vertex {vertex} has no worker key in {folder}: "
                    f"it was revoked (deleted) or never made; `pipelogic keys worker {folder} {vertex}` makes one"
                )
            else:
                ops = sorted((d / "operators").glob("*.key_secret"))
                if len(ops) != 1:
                    raise KeyFileError(
                        f"PIPELOGIC_KEYS={folder}: no key for this client (a worker key named "
                        f"after PIPELOGIC_COMPONENT, or PIPELOGIC_OPERATOR naming one of "
                        f"{len(ops)} operator keys)"
                    )
                key_file = str(ops[0])
    if not server_file and not key_file:
        return None
    if not (server_file and key_file):
        raise KeyFileError(
            "CURVE needs both PIPELOGIC_CURVE_SERVER_KEY (the broker's public key file) and "
            "PIPELOGIC_CURVE_KEY (this client's secret key file)"
        )
    for f in (server_file, key_file):
        if not Path(f).exists():
            raise KeyFileMissing(f"{f}: no such key file")
    server, _ = zmq.auth.load_certificate(server_file)
    if server is None:
        raise KeyFileError(f"{server_file}: holds no public key")
    public, secret = _load_secret(Path(key_file))
    return ClientKeys(public, secret, server, key_file)
