"""What every codec shares: the :class:`Codec` base, the out-of-band threshold and ext
code, number ranges, and how a mismatch describes a value (see :mod:`._codec`)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from pipelogic.errors import TypeDefinitionError, TypeMismatch
from pipelogic.types._ast import Named, Type
from pipelogic.types._registry import resolve

__all__ = ["OOB_EXT", "OOB_THRESHOLD", "Codec", "describe"]

OOB_THRESHOLD = 64 * 1024
"""Bytes values at least this long travel as separate zero-copy frames."""
OOB_EXT = 1
"""msgpack ext code of an out-of-band buffer reference (payload: big-endian uint32 index)."""

_INT_RANGES = {
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
}
_F32_MAX = 3.4028234663852886e38
_PACK_F = struct.Struct("<f")
_PACK_IDX = struct.Struct(">I")


def describe(v: Any) -> str:
    """``str ('abc')``: the type name and a short repr, for error messages."""
    pinned = getattr(v, "__pipelang_type__", None)
    kind = f"{pinned} wrapper" if pinned is not None else type(v).__name__
    r = repr(v)
    if len(r) > 40:
        r = r[:37] + "..."
    return f"{kind} ({r})"


def _chain(t: Type) -> list[Type]:
    out = [t]
    seen = {t}
    while isinstance(t, Named):
        try:
            t = resolve(t)
        except TypeDefinitionError:
            break
        if t in seen:
            break
        seen.add(t)
        out.append(t)
    return out


def _same(pinned: Type, t: Type) -> bool:
    if pinned == t:
        return True
    a = _chain(pinned)
    b = _chain(t)
    return any(x in b for x in a)


class Codec:
    """Checks, encodes and decodes values of one type (compiled, cached)."""

    def __init__(self, t: Type, display: str | None = None) -> None:
        self.type = t
        self.display = display or str(t)

    def mismatch(self, v: Any, detail: str = "") -> TypeMismatch:
        return TypeMismatch(self.display, describe(v) + detail)

    def pin_ok(self, v: Any) -> None:
        pinned = getattr(v, "__pipelang_type__", None)
        if pinned is not None and not _same(pinned, self.type):
            raise self.mismatch(v)

    def check(self, v: Any) -> Any:
        raise NotImplementedError

    def enc(self, v: Any, bufs: list[Any]) -> Any:
        raise NotImplementedError

    def dec(self, o: Any, bufs: Sequence[Any]) -> Any:
        raise NotImplementedError

    def is_unit(self) -> bool:
        return False
