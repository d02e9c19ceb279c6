"""The codecs of the atomic types: integers (with their ranges), floats, Bool, String and
Char, Bytes (large ones out of band). Compiled by :func:`._codec.codec_for`."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import msgpack

from pipelogic.types._ast import Atomic
from pipelogic.types._codecbase import _F32_MAX, _INT_RANGES, _PACK_F, _PACK_IDX, OOB_EXT, OOB_THRESHOLD, Codec

__all__: list[str] = []  # the classes are internal to the codec


class _Int(Codec):
    def __init__(self, t: Atomic) -> None:
        super().__init__(t)
        self.lo, self.hi = _INT_RANGES[t.name]

    def check(self, v: Any) -> int:
        if type(v) is int:
            if self.lo <= v <= self.hi:
                return v
            raise self.mismatch(v, f" out of range {self.lo}..{self.hi}")
        self.pin_ok(v)
        if isinstance(v, bool) or not hasattr(type(v), "__index__"):
            raise self.mismatch(v)
        i = operator.index(v)
        if not self.lo <= i <= self.hi:
            raise self.mismatch(v, f" out of range {self.lo}..{self.hi}")
        return i

    def enc(self, v: Any, bufs: list[Any]) -> int:
        return self.check(v)

    def dec(self, o: Any, bufs: Sequence[Any]) -> int:
        if type(o) is int and self.lo <= o <= self.hi:
            return o
        raise self.mismatch(o)


class _Float(Codec):
    def __init__(self, t: Atomic) -> None:
        super().__init__(t)
        self.single = t.name == "Float"

    def check(self, v: Any) -> float:
        if type(v) is not float:
            self.pin_ok(v)
            if isinstance(v, bool) or (not isinstance(v, (int, float)) and not hasattr(type(v), "__float__")):
                raise self.mismatch(v)
            if isinstance(v, str):
                raise self.mismatch(v)
            v = float(v)
        if self.single:
            if math.isfinite(v) and abs(v) > _F32_MAX:
                raise self.mismatch(v, " out of the 32-bit float range")
            rounded: float = _PACK_F.unpack(_PACK_F.pack(v))[0]
            return rounded
        out: float = v
        return out

    def enc(self, v: Any, bufs: list[Any]) -> float:
        return self.check(v)

    def dec(self, o: Any, bufs: Sequence[Any]) -> float:
        if type(o) is float:
            if self.single and math.isfinite(o) and abs(o) > _F32_MAX:
                raise self.mismatch(o, " out of the 32-bit float range")
            return o
        raise self.mismatch(o)


class _Bool(Codec):
    def check(self, v: Any) -> bool:
        if type(v) is bool:
            return v
        pinned = getattr(v, "__pipelang_type__", None)
        if pinned == self.type:
            return bool(v)
        raise self.mismatch(v)

    def enc(self, v: Any, bufs: list[Any]) -> bool:
        return self.check(v)

    def dec(self, o: Any, bufs: Sequence[Any]) -> bool:
        if type(o) is bool:
            return o
        raise self.mismatch(o)


class _Str(Codec):
    def __init__(self, t: Atomic) -> None:
        super().__init__(t)
        self.char = t.name == "Char"

    def check(self, v: Any) -> str:
        if type(v) is not str:
            self.pin_ok(v)
            if not isinstance(v, str):
                raise self.mismatch(v)
        if self.char and len(v) != 1:
            raise self.mismatch(v, " of length != 1")
        if not v.isascii():
            try:  # a lone surrogate is a str but has no UTF-8 form: refuse it here, with a path
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise self.mismatch(v, " (a lone surrogate has no UTF-8 encoding)") from None
        return v

    def enc(self, v: Any, bufs: list[Any]) -> str:
        return self.check(v)

    def dec(self, o: Any, bufs: Sequence[Any]) -> str:
        if type(o) is str and (not self.char or len(o) == 1):
            return o
        raise self.mismatch(o)


class _Bytes(Codec):
    def check(self, v: Any) -> Any:
        if type(v) is bytes:
            return v
        self.pin_ok(v)
        if isinstance(v, (bytes, bytearray)):
            return v
        if isinstance(v, str) or isinstance(v, (int, float)):
            raise self.mismatch(v)
        try:
            mv = memoryview(v)
        except TypeError:
            raise self.mismatch(v) from None
        if not mv.c_contiguous:
            raise self.mismatch(v, " (not contiguous)")
        return mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv

    def enc(self, v: Any, bufs: list[Any]) -> Any:
        v = self.check(v)
        if len(v) >= OOB_THRESHOLD:
            bufs.append(v)
            return msgpack.ExtType(OOB_EXT, _PACK_IDX.pack(len(bufs) - 1))
        return v

    def dec(self, o: Any, bufs: Sequence[Any]) -> Any:
        if type(o) is bytes:
            return o
        if type(o) is msgpack.ExtType and o.code == OOB_EXT and len(o.data) == 4:
            i = _PACK_IDX.unpack(o.data)[0]
            if i < len(bufs):
                return bufs[i]
            raise self.mismatch(o, f" (buffer {i} of {len(bufs)})")
        raise self.mismatch(o)
