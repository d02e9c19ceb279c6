"""``loan()``: an output buffer the runtime can send without copying it."""

from __future__ import annotations

import math
from typing import Any

from pipelogic.worker._session import active_session

__all__ = ["loan"]


def loan(shape: int | tuple[int, ...], dtype: str = "uint8") -> Any:
    """A writable buffer to build a large output in: ``loan(n)`` is a ``memoryview`` of
    ``n`` bytes, ``loan((1080, 1920, 3))`` a numpy array of that shape and ``dtype``
    (numpy needed). Return it as (the whole of) a ``Bytes`` output, or an ``Image`` made
    from it, and it is sent without a copy.

    When this worker shares memory with the broker (docs/semantics.md, "Shared memory") the
    buffer lives in a slot of its pool, so the value never passes through a socket, and
    is never copied once written; otherwise (or below ``PIPELOGIC_SHM_MIN_BYTES``, or when
    the pool is full) it is ordinary memory, and everything works the same. Once returned,
    the buffer belongs to the runtime: do not write to it again. One not returned goes back
    to the pool when the last reference to it goes. Safe to call from any thread (a capture
    thread feeding ``virtual_in``, say)."""
    np: Any = None
    if isinstance(shape, int):
        dims: tuple[int, ...] = (shape,)
        itemsize = 1
    else:
        dims = tuple(int(d) for d in shape)
        import numpy  # only for arrays: a plain byte loan needs no numpy

        np = numpy
        itemsize = np.dtype(dtype).itemsize
    if any(d < 0 for d in dims):
        raise ValueError(f"loan(): negative size in {shape!r}")
    n = math.prod(dims) * itemsize
    session = active_session()
    pool = session.shm.pool if session is not None else None
    buf = pool.lend(n) if pool is not None else None
    if buf is None:
        buf = memoryview(bytearray(n))
    if np is None:
        return buf
    return np.frombuffer(buf, dtype=dtype).reshape(dims)
