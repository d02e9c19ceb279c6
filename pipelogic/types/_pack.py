"""msgpack packing with a reused ``Packer`` per thread.

``msgpack.packb`` builds a ``Packer`` on every call, which costs more than packing a small
message (0.5 µs against 0.2 µs for a small record here). A ``Packer`` keeps a buffer, so
each thread gets its own: a worker packs on its main thread and its heartbeat thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgpack

__all__ = ["pack"]

_local = threading.local()


def pack(obj: Any) -> bytes:
    """``msgpack.packb(obj, use_bin_type=True)``, without building a Packer each time."""
    fn: Callable[[Any], bytes]
    try:
        fn = _local.pack
    except AttributeError:
        fn = _local.pack = msgpack.Packer(use_bin_type=True).pack
    return fn(obj)
