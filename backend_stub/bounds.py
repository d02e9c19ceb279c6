"""How large a message the broker takes on each socket, and giving memory back after
dropping a large one (issue 29: a stranger could grow the broker through any port).

libzmq bounds each frame (``ZMQ_MAXMSGSIZE``, set before bind by ``transport.bind``) and
the messages queued per peer (``RCVHWM``); it has no bound on a whole multipart message,
which it hands over only once all of it arrived. These bound what is left: the broker
looks at a message's size before copying or decoding anything in it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

from pipelogic import protocol as P
from pipelogic import transport

__all__ = [
    "CONTROL_MAX_BYTES",
    "CONTROL_MAX_FRAMES",
    "MAX_MESSAGE_BYTES",
    "TICK_PORT_MAX_FRAME",
    "give_back",
    "total",
]

CONTROL_MAX_FRAMES = 4  # [client, empty, header] and at most one more
CONTROL_MAX_BYTES = P.MAX_HEADER_BYTES + 1024  # one header, and the routing frames
MAX_MESSAGE_BYTES = transport.MAX_FRAME_BYTES  # a whole results message, header and payload frames
TICK_PORT_MAX_FRAME = 1024  # a worker never sends on its tick socket: anything sent there is a stranger's
_TRIM_FROM = 16 * 1024 * 1024


def total(frames: list[Any]) -> int:
    """The bytes of a message's frames (zmq.Frames or bytes), nothing copied."""
    return sum(len(f) for f in frames)


_libc: Any = None


def give_back(size: int) -> None:
    """After dropping a message of ``size`` bytes: return the freed memory to the system
    (glibc keeps freed heap otherwise, and a broker that once held a stranger's 400 MB
    would keep it). Below 16 MiB, or without glibc, nothing is done."""
    global _libc
    if size < _TRIM_FROM:
        return
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
