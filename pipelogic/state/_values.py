"""Serialise a worker's state: msgpack plus our typed values, never pickle.

Supported: None, bool, int (any size), float, str, bytes/bytearray/memoryview, list, tuple,
dict (any supported hashable keys), set, frozenset, pipelang records (``Record`` and the
``pipelogic.cv`` classes, with their pinned type), ``Variant``, numpy arrays of numeric
dtypes; ``collections.deque`` (with its ``maxlen``), ``Counter``, ``OrderedDict`` and
``defaultdict`` with a built-in factory; ``datetime``, ``date``, ``time`` and
``timedelta`` (a ``ZoneInfo`` zone by its key, any other zone as its offset);
``Decimal`` and ``Fraction``; and dataclasses, NamedTuples and enums defined in the
component's own source (:mod:`pipelogic.state._classes`). Each comes back as the same type
with the same contents. Subclasses of int, float, str, list and dict (the pipelang wrappers
such as ``Int64``) are stored as their base value. Anything else is a
:class:`SnapshotValueError` naming the type and where it sits inside the state.

Decoding runs no code but the constructors of those types (never a class named by the
snapshot that is not one of them).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgpack

from pipelogic.errors import SnapshotValueError
from pipelogic.state._classes import SourceClasses, class_kind
from pipelogic.types import Record, Variant
from pipelogic.types._codec import _CLASSES

__all__ = ["SourceClasses", "pack_state", "unpack_state"]

(
    _TUPLE,
    _SET,
    _FROZENSET,
    _RECORD,
    _VARIANT,
    _BIGINT,
    _NDARRAY,
    _DEQUE,
    _COUNTER,
    _ODICT,
    _DEFAULTDICT,
    _DATETIME,
    _DATE,
    _TIME,
    _TIMEDELTA,
    _DECIMAL,
    _FRACTION,
    _ENUM,
    _DATACLASS,
    _NAMEDTUPLE,
) = range(1, 21)
_INT64 = (-(2**63), 2**64 - 1)

# A defaultdict's factory is kept by name, from this list only (a lambda would need pickle).
_FACTORIES: dict[str, Any] = {
    f.__name__: f
    for f in (
        list,
        dict,
        set,
        frozenset,
        tuple,
        int,
        float,
        str,
        bytes,
        bool,
        collections.Counter,
        collections.OrderedDict,
        collections.deque,
    )
}
_ZONEINFO = "zoneinfo"

HOLDS = (
    "None, bool, int, float, str, bytes, list, tuple, dict, set, pipelang records and variants, "
    "numeric numpy arrays, deque, Counter, OrderedDict, defaultdict (built-in factory), datetime "
    "values, Decimal, Fraction, and dataclasses, NamedTuples and enums defined in the component's "
    "own source"
)


def _zone(t: dt.datetime | dt.time) -> str | None:
    tz = t.tzinfo
    return getattr(tz, "key", None) if type(tz).__module__ == _ZONEINFO else None


class _Codec:
    def __init__(self, classes: SourceClasses) -> None:
        self.classes = classes

    def pack(self, value: Any) -> bytes:
        packed: bytes = msgpack.packb(value, default=self.default, strict_types=True, use_bin_type=True)
        return packed

    def unpack(self, data: bytes) -> Any:
        return msgpack.unpackb(data, ext_hook=self.hook, strict_map_key=False, raw=False)

    def _ext(self, code: int, value: Any) -> msgpack.ExtType:
        return msgpack.ExtType(code, self.pack(value))

    def _named(self, o: Any) -> list[Any]:
        cls = type(o)
        reason = self.classes.why_not(cls)
        if reason is not None:
            raise TypeError(reason)
        return [cls.__module__, cls.__qualname__]

    def default(self, o: Any) -> Any:
        if isinstance(o, enum.Enum):
            name = o.name if o.name is not None and o.name in type(o).__members__ else None
            return self._ext(_ENUM, [*self._named(o), name, None if name is not None else int(o.value)])
        if isinstance(o, tuple):
            if class_kind(type(o)) == "namedtuple":
                return self._ext(_NAMEDTUPLE, [*self._named(o), list(o)])
            return self._ext(_TUPLE, list(o))
        if isinstance(o, Record):
            cls_name = next((n for n, c in _CLASSES.items() if c is type(o)), "")
            pinned = o.__pipelang_type__
            return self._ext(_RECORD, [cls_name, str(pinned) if pinned is not None else None, dict(o)])
        if isinstance(o, collections.Counter):
            return self._ext(_COUNTER, dict(o))
        if isinstance(o, collections.OrderedDict):
            return self._ext(_ODICT, [[k, v] for k, v in o.items()])
        if isinstance(o, collections.defaultdict):
            f = o.default_factory
            if f is not None and _FACTORIES.get(getattr(f, "__name__", "")) is not f:
                raise TypeError(
                    f"a defaultdict whose factory is {getattr(f, '__qualname__', f)!r} (the factory must "
                    f"be one of {', '.join(_FACTORIES)}, or None)"
                )
            return self._ext(_DEFAULTDICT, [f.__name__ if f is not None else None, dict(o)])
        if isinstance(o, collections.deque):
            return self._ext(_DEQUE, [o.maxlen, list(o)])
        if isinstance(o, dt.datetime):
            return self._ext(_DATETIME, [o.isoformat(), _zone(o), o.fold])
        if isinstance(o, dt.date):
            return self._ext(_DATE, o.isoformat())
        if isinstance(o, dt.time):
            return self._ext(_TIME, [o.isoformat(), _zone(o), o.fold])
        if isinstance(o, dt.timedelta):
            return self._ext(_TIMEDELTA, [o.days, o.seconds, o.microseconds])
        if isinstance(o, Decimal):
            return self._ext(_DECIMAL, str(o))
        if isinstance(o, Fraction):
            return self._ext(_FRACTION, [str(o.numerator), str(o.denominator)])
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return self._ext(_DATACLASS, [*self._named(o), _attributes(o)])
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
            return self._ext(_FROZENSET, list(o))
        if isinstance(o, set):
            return self._ext(_SET, list(o))
        if isinstance(o, dict):
            return dict(o)
        if isinstance(o, list):
            return list(o)
        if isinstance(o, Variant):
            return self._ext(_VARIANT, [o.tag, o.value])
        if type(o).__module__ == "numpy" and type(o).__name__ == "ndarray" and o.dtype.kind in "biufc":
            return self._ext(_NDARRAY, [o.dtype.str, list(o.shape), o.tobytes(order="C")])
        raise TypeError(type(o).__name__)

    def hook(self, code: int, data: bytes) -> Any:
        if code == _BIGINT:
            return int(data.decode())
        v = self.unpack(data)
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
        if code == _DEQUE:
            return collections.deque(v[1], v[0])
        if code == _COUNTER:
            return collections.Counter(v)
        if code == _ODICT:
            return collections.OrderedDict((k, x) for k, x in v)
        if code == _DEFAULTDICT:
            if v[0] is not None and v[0] not in _FACTORIES:
                raise ValueError(f"a defaultdict factory {v[0]!r} that a snapshot cannot hold")
            return collections.defaultdict(_FACTORIES[v[0]] if v[0] is not None else None, v[1])
        if code in (_DATETIME, _TIME):
            cls = dt.datetime if code == _DATETIME else dt.time
            value = cls.fromisoformat(v[0])
            if v[1] is not None:
                from zoneinfo import ZoneInfo

                value = value.replace(tzinfo=ZoneInfo(v[1]))
            return value.replace(fold=v[2])
        if code == _DATE:
            return dt.date.fromisoformat(v)
        if code == _TIMEDELTA:
            return dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2])
        if code == _DECIMAL:
            return Decimal(v)
        if code == _FRACTION:
            return Fraction(int(v[0]), int(v[1]))
        if code in (_ENUM, _DATACLASS, _NAMEDTUPLE):
            return self._own(code, v)
        raise ValueError(f"unknown extension type {code} in a snapshot")

    def _own(self, code: int, v: list[Any]) -> Any:
        module, qualname = v[0], v[1]
        cls = self.classes.find(module, qualname)
        kind = {_ENUM: "enum", _DATACLASS: "dataclass", _NAMEDTUPLE: "namedtuple"}[code]
        if cls is None or class_kind(cls) != kind:
            raise SnapshotValueError(
                f"the snapshot holds a {kind} {module}.{qualname}, which the component's source does not "
                "define (was it renamed or moved?)"
            )
        if code == _ENUM:
            members: dict[str, Any] = cls.__dict__["_member_map_"]
            member = members.get(v[2]) if v[2] is not None else None
            if member is None and v[2] is None and issubclass(cls, enum.Flag):
                member = cls(v[3])  # a combination of flags: its value
            if member is None:
                raise SnapshotValueError(f"the snapshot holds {module}.{qualname}.{v[2]}, which the enum no longer has")
            return member
        if code == _NAMEDTUPLE:
            return tuple.__new__(cls, v[2])
        return _restore_dataclass(cls, v[2], f"{module}.{qualname}")


def _attributes(o: Any) -> dict[str, Any]:
    """A dataclass instance's fields and any other attributes in its ``__dict__``."""
    attrs = {f.name: getattr(o, f.name) for f in dataclasses.fields(o) if hasattr(o, f.name)}
    attrs.update(getattr(o, "__dict__", {}))
    return attrs


def _restore_dataclass(cls: type, attrs: dict[str, Any], where: str) -> Any:
    obj: Any = object.__new__(cls)
    for f in dataclasses.fields(cls):
        if f.name in attrs:
            continue
        if f.default is not dataclasses.MISSING:
            attrs[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            attrs[f.name] = f.default_factory()
        else:
            raise SnapshotValueError(f"the snapshot's {where} has no field {f.name!r}, which the class now requires")
    for name, value in attrs.items():
        try:
            object.__setattr__(obj, name, value)
        except AttributeError:
            raise SnapshotValueError(
                f"the snapshot's {where} has an attribute {name!r} that the class cannot take"
            ) from None
    return obj


def pack_state(state: Any, vertex: str = "", classes: SourceClasses | None = None) -> bytes:
    """Serialise ``state``. ``classes`` says which dataclasses, NamedTuples and enums are the
    component's own (default: those of ``__main__``). Raises :class:`SnapshotValueError`
    naming the first value that cannot be stored and its path (``state['cache'][3]``)."""
    codec = _Codec(classes or SourceClasses())
    try:
        return codec.pack(state)
    except (TypeError, ValueError, OverflowError) as exc:
        path, bad, reason = _find_bad(codec, state, "state")
        what = f"a value of type {type(bad).__module__}.{type(bad).__qualname__}" if bad is not None else str(exc)
        if reason and not reason.startswith(type(bad).__name__):
            what += f" ({reason})"
        where = f"vertex {vertex}: " if vertex else ""
        raise SnapshotValueError(
            f"{where}{path}: cannot snapshot {what}; a state holds {HOLDS} (never pickle): convert it to "
            "one of those, or give run() a state_codec=(to_plain, from_plain) pair that does"
        ) from None


def unpack_state(data: bytes, classes: SourceClasses | None = None) -> Any:
    """The inverse of :func:`pack_state`, with the same ``classes``. A class the snapshot
    names that is not one of them is a :class:`SnapshotValueError`."""
    return _Codec(classes or SourceClasses()).unpack(data)


def _find_bad(codec: _Codec, value: Any, path: str) -> tuple[str, Any, str]:
    """Depth-first search for the first value the codec refuses: its path, itself, why."""
    try:
        codec.pack(value)
        return path, None, ""
    except (TypeError, ValueError, OverflowError) as exc:
        reason = str(exc)
    children: list[tuple[Any, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            children += [(k, f"{path} key {k!r}"), (v, f"{path}[{k!r}]")]
    elif isinstance(value, (list, tuple, set, frozenset, collections.deque)):
        children = [(v, f"{path}[{i}]") for i, v in enumerate(value)]
    elif isinstance(value, Variant):
        children = [(value.value, f"{path}.value")]
    elif dataclasses.is_dataclass(value) and not isinstance(value, type) and codec.classes.why_not(type(value)) is None:
        children = [(v, f"{path}.{k}") for k, v in _attributes(value).items()]
    for item, p in children:
        found = _find_bad(codec, item, p)
        if found[1] is not None:
            return found
    return path, value, reason
