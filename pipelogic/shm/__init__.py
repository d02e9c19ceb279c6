"""The shared-memory path's common ground: slot descriptors, file names, settings.

Large ``Bytes`` (at least :func:`min_bytes`) between processes that share a shared-memory
directory (``/dev/shm``, or ``PIPELOGIC_SHM_DIR``) travel as *descriptors*: the producing
worker copies the payload into a slot file of its pool and sends a small frame naming the
slot where the payload frame would have been. Nothing here touches sockets.

A pool belongs to one worker incarnation (its epoch): files ``<prefix>-<index>`` (the
slots) and ``<prefix>-ctl`` (one state byte per slot). The producer sets a slot HELD before
sending its descriptor; from then on the broker owns it and sets it FREE once no buffer,
log or in-flight tick refers to it any more. A consumer whose user code kept a view of a
slot past its tick marks it KEPT before it answers; the broker then sets it GONE instead of
FREE, and the producer abandons the slot (unlinks it; the consumer's mapping stays valid)
instead of overwriting it.

Who shares the directory is proven in the handshake: the worker creates a probe file with
a random name and the broker looks for it (docs/protocol.md).
"""

from __future__ import annotations

import os
import re
import struct
from enum import IntEnum
from pathlib import Path

__all__ = [
    "CTL_SLOTS",
    "FREE",
    "GONE",
    "HELD",
    "KEPT",
    "MAGIC",
    "Descriptor",
    "ctl_name",
    "decode_descriptor",
    "encode_descriptor",
    "enabled",
    "file_mode",
    "is_descriptor",
    "max_bytes",
    "min_bytes",
    "my_groups",
    "pool_prefix",
    "run_prefix",
    "shm_dir",
    "slot_mode",
    "slot_name",
]

MAGIC = b"\x00PLSHM1\x00"
"""Starts every descriptor frame. Out-of-band buffer frames are at least 64 KiB
(``OOB_THRESHOLD``) and descriptors far smaller, so the two cannot be confused."""

CTL_SLOTS = 4096
"""Slots per pool (the control file is one page)."""


class SlotState(IntEnum):
    """A slot's state byte in its pool's control file."""

    FREE = 0  # the producer may fill it
    HELD = 1  # the broker owns it
    KEPT = 2  # held, and a consumer keeps a view of it
    GONE = 3  # released by the broker but kept by a consumer: the producer lets it go, never refills it


FREE, HELD, KEPT, GONE = SlotState  # the names the slot code compares with

_HEAD = struct.Struct("<8sIQ")  # magic, slot index, payload length; the pool prefix follows
_PREFIX = re.compile(r"pipelogic-[0-9a-f]{1,32}-[0-9]{1,20}")
_MAX_DESCRIPTOR = 128


def shm_dir() -> Path:
    """The shared-memory directory: ``PIPELOGIC_SHM_DIR`` or ``/dev/shm``."""
    return Path(os.environ.get("PIPELOGIC_SHM_DIR") or "/dev/shm")


def enabled() -> bool:
    """False when ``PIPELOGIC_SHM=0`` turns the path off for this process (it then neither
    offers it in its Hello nor, for a broker, accepts it)."""
    return os.environ.get("PIPELOGIC_SHM", "1").strip().lower() not in ("0", "off", "false", "no")


def min_bytes() -> int:
    """Payloads at least this large go through shared memory (``PIPELOGIC_SHM_MIN_BYTES``,
    default 512 KiB: below that a socket copy costs less than a slot's bookkeeping)."""
    return max(64 * 1024, int(os.environ.get("PIPELOGIC_SHM_MIN_BYTES", 512 * 1024)))


def max_bytes() -> int:
    """A worker's pool never grows past this many bytes (``PIPELOGIC_SHM_POOL_BYTES``,
    default 512 MiB); beyond it payloads go over the socket as before."""
    return int(os.environ.get("PIPELOGIC_SHM_POOL_BYTES", 512 * 1024 * 1024))


def file_mode() -> int:
    """The mode of a pool's control file and of the handshake's probe, from
    ``PIPELOGIC_SHM_MODE``:

    - ``600`` (the default): only processes of the same user map each other's slots; right
      for a directory the whole host shares, as /dev/shm;
    - ``660``: the producer's group too. Under keys in containers each worker runs as a uid
      and a group of its own, and only the consumers the broker names for its streams (and
      the broker) are given that group, so the kernel keeps every other process out;
    - ``666``: anyone who reaches the directory (a tmpfs volume only the pipeline's
      containers mount, without keys). A broker with keys never offers the path to a
      worker whose files are 0666.

    Slot files get :func:`slot_mode` of it."""
    mode = os.environ.get("PIPELOGIC_SHM_MODE", "600").strip().lstrip("0o") or "600"
    if mode not in ("600", "660", "666"):
        raise ValueError(f"PIPELOGIC_SHM_MODE: expected 600, 660 or 666, got {os.environ.get('PIPELOGIC_SHM_MODE')!r}")
    return int(mode, 8)


def slot_mode(mode: int) -> int:
    """The mode of slot files in a pool whose control file has ``mode``: the group reads
    them but never writes (a consumer marks KEPT in the control file; the payload is the
    producer's alone)."""
    return 0o640 if mode == 0o660 else mode


def my_groups() -> list[int]:
    """This process's groups (effective and supplementary), for the Hello: the broker sends
    descriptors of a group-readable pool only to a worker in that pool's group."""
    return sorted({os.getegid(), *os.getgroups()})


def pool_prefix(run: str, epoch: int) -> str:
    """The file-name prefix of the pool of worker incarnation ``epoch`` in ``run``."""
    return f"pipelogic-{run.replace('-', '')[:8] or '0'}-{epoch}"


def run_prefix(run: str) -> str:
    """What every pool file of ``run`` starts with (the broker sweeps by it)."""
    return f"pipelogic-{run.replace('-', '')[:8] or '0'}-"


def slot_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index}"


def ctl_name(prefix: str) -> str:
    return f"{prefix}-ctl"


class Descriptor:
    """A parsed descriptor: slot ``index`` of pool ``prefix`` holds ``length`` bytes."""

    __slots__ = ("index", "length", "prefix")

    def __init__(self, prefix: str, index: int, length: int) -> None:
        self.prefix = prefix
        self.index = index
        self.length = length

    @property
    def name(self) -> str:
        return slot_name(self.prefix, self.index)


def encode_descriptor(prefix: str, index: int, length: int) -> bytes:
    return _HEAD.pack(MAGIC, index, length) + prefix.encode("ascii")


def is_descriptor(frame: bytes | memoryview) -> bool:
    """Whether a buffer frame is a descriptor (cheap: length and magic only)."""
    return len(frame) <= _MAX_DESCRIPTOR and bytes(frame[:8]) == MAGIC


def decode_descriptor(frame: bytes | memoryview) -> Descriptor:
    """Parse a descriptor frame; ValueError saying what is wrong with it."""
    data = bytes(frame)
    if len(data) > _MAX_DESCRIPTOR or len(data) <= _HEAD.size or data[:8] != MAGIC:
        raise ValueError(f"not a shared-memory descriptor ({len(data)} bytes)")
    _, index, length = _HEAD.unpack_from(data)
    try:
        prefix = data[_HEAD.size :].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("shared-memory descriptor: the pool name is not ASCII") from None
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"shared-memory descriptor: bad pool name {prefix!r}")
    if index >= CTL_SLOTS:
        raise ValueError(f"shared-memory descriptor: slot {index} of a pool of {CTL_SLOTS}")
    if length <= 0:
        raise ValueError(f"shared-memory descriptor: length {length}")
    return Descriptor(prefix, index, length)
