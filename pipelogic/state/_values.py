"""Serialise a worker's state: msgpack plus our typed values, never pickle.

Supported: None, bool, int (any size), float, str, bytes/bytearray/memoryview, list, tuple,
dict (any supported hashable keys), set, frozenset, pipelang records (``Record`` and the
``pipelogic.cv`` classes, with their pinned type), ``Variant``, and numpy arrays of numeric
dtypes. Subclasses of int, float, str, list and dict (the pipelang wrappers such as
``Int64``) are stored as their base value. Anything else is a :class:`SnapshotValueError`
naming the type and where it sits inside the state.
"""

from __future__ import annotations

from typing import Any

import msgpack

from pipelogic.errors import SnapshotValueError
from pipelogic.types import Record, Variant
from pipelogic.types._codec import _CLASSES

__all__ = ["pack_state", "unpack_state"]

_TUPLE, _SET, _FROZENSET, _RECORD, _VARIANT, _BIGINT, _NDARRAY = range(1, 8)
_INT64 = (-(2**63), 2**64 - 1)


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, default=_default, strict_types=True, use_bin_type=True)


def _default(o: Any) -> Any:
    if isinstance(o, tuple):
        return msgpack.ExtType(_TUPLE, _pack(list(o)))
    if isinstance(o, Record):
        cls_name = next((n for n, c in _CLASSES.items() if c is type(o)), "")
        pinned = o.__pipelang_type__
        return msgpack.ExtType(_RECORD, _pack([cls_name, str(pinned) if pinned is not None else None, dict(o)]))
    if isinstance(o, bool):
        return bool(o)
    if isinstance(o, int):
        if _INT64[0] <= o <= _INT64[1]:
            return int(o)
        return msgpack.ExtType(_BIGINT, str(int(o)).encode())
    if isinstance(o, float):
        return float(o)
    if isinstance(o, str):
        return str(o)
    if isinstance(o, (bytearray, memoryview)):
        return bytes(o)
    if isinstance(o, frozenset):
        return msgpack.ExtType(_FROZENSET, _pack(list(o)))
    if isinstance(o, set):
        return msgpack.ExtType(_SET, _pack(list(o)))
    if isinstance(o, dict):
        return dict(o)
    if isinstance(o, list):
        return list(o)
    if isinstance(o, Variant):
        return msgpack.ExtType(_VARIANT, _pack([o.tag, o.value]))
    if type(o).__module__ == "numpy" and type(o).__name__ == "ndarray" and o.dtype.kind in "biufc":
        return msgpack.ExtType(_NDARRAY, _pack([o.dtype.str, list(o.shape), o.tobytes(order="C")]))
    raise TypeError(type(o).__name__)


def _hook(code: int, data: bytes) -> Any:
    if code == _BIGINT:
        return int(data.decode())
    v = _unpack(data)
    if code == _TUPLE:
        return tuple(v)
    if code == _SET:
        return set(v)
    if code == _FROZENSET:
        return frozenset(v)
    if code == _RECORD:
        cls_name, pinned, fields = v
        rec = _CLASSES.get(cls_name, Record)._from_fields(fields)
        if pinned is not None:
            from pipelogic.types import create_type

            rec.__pipelang_type__ = create_type(pinned)
        return rec
    if code == _VARIANT:
        return Variant(v[0], v[1])
    if code == _NDARRAY:
        import numpy as np

        dtype, shape, raw = v
        return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()
    raise ValueError(f"unknown extension type {code} in a snapshot")


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_hook, strict_map_key=False, raw=False)


def pack_state(state: Any, vertex: str = "") -> bytes:
    """Serialise ``state``. Raises :class:`SnapshotValueError` naming the first value that
    cannot be stored and its path (``state['cache'][3]``)."""
    try:
        return _pack(state)
    except (TypeError, ValueError, OverflowError) as exc:
        path, bad = _find_bad(state, "state")
        what = f"a value of type {type(bad).__module__}.{type(bad).__qualname__}" if bad is not None else str(exc)
        where = f"vertex {vertex}: " if vertex else ""
        raise SnapshotValueError(
            f"{where}{path}: cannot snapshot {what}; a state holds None, bool, int, float, str, "
            "bytes, list, tuple, dict, set, pipelang records and variants, and numeric numpy "
            "arrays (never pickle): convert it to one of those, or give run() a "
            "state_codec=(to_plain, from_plain) pair that does"
        ) from None


def unpack_state(data: bytes) -> Any:
    """The inverse of :func:`pack_state`."""
    return _unpack(data)


def _find_bad(value: Any, path: str) -> tuple[str, Any]:
    """Depth-first search for the first value :func:`_default` refuses."""
    try:
        _pack(value)
        return path, None
    except (TypeError, ValueError, OverflowError):
        pass
    if isinstance(value, dict):
        for k, v in value.items():
            for item, p in ((k, f"{path} key {k!r}"), (v, f"{path}[{k!r}]")):
                found = _find_bad(item, p)
                if found[1] is not None:
                    return found
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, v in enumerate(value):
            found = _find_bad(v, f"{path}[{i}]")
            if found[1] is not None:
                return found
    elif isinstance(value, Variant):
        return _find_bad(value.value, f"{path}.value")
    return path, value
