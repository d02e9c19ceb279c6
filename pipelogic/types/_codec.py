"""Validation and the msgpack codec of typed values.

Every type compiles once (cached) to a :class:`Codec` with three methods:

- ``check(v)``: validate a Python value, return it normalised (tuples for tuples, floats
  for Double, Float rounded to 32 bits, :class:`Record` for records, unit names as str);
- ``enc(v, bufs)``: validate and return msgpack-ready data; ``Bytes`` of at least
  :data:`OOB_THRESHOLD` bytes are appended to ``bufs`` and replaced by an ext reference, so the
  transport can send them zero-copy as frames of their own;
- ``dec(o, bufs)``: strictly check decoded msgpack data and return the Python value.

Wire forms: atomics as msgpack scalars (``Bytes`` as bin), lists and tuples as arrays,
records as maps by field name, unions as ``[tag, value]`` with the tag the option's index,
named types as their definition, unit types as an empty array, type variables as any
msgpack-native value.

Mismatches raise :class:`TypeMismatch`; its path is prepended while the error unwinds, so
the success path pays nothing for it. The public decoders turn every failure into
:class:`DecodeError`.

Modules: the :class:`Codec` base and the shared constants are in :mod:`._codecbase`, the
atomic types' codecs in :mod:`._atoms`; this module keeps the composite codecs with the
compiler and its cache, because they recurse into each other (a list's codec asks
:func:`codec_for` for its item's, which may be the list's own named type).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack

from pipelogic.errors import DecodeError, TypeMismatch
from pipelogic.types._ast import Atomic, ListOf, Named, RecordOf, TupleOf, Type, UnionOf, Var
from pipelogic.types._atoms import _Bool, _Bytes, _Float, _Int, _Str
from pipelogic.types._codecbase import _INT_RANGES, OOB_EXT, OOB_THRESHOLD, Codec, _same, describe
from pipelogic.types._invariants import INVARIANTS
from pipelogic.types._records import Record, Variant
from pipelogic.types._registry import resolve

__all__ = [
    "OOB_EXT",
    "OOB_THRESHOLD",
    "Codec",
    "Record",
    "Variant",
    "codec_for",
    "describe",
    "register_class",
]

# Python classes that decoded values of a named record type become (pipelogic.cv).
_CLASSES: dict[str, type[Record]] = {}


def register_class(name: str, cls: type[Record]) -> None:
    """Make decoded values of the named record type ``name`` instances of ``cls``."""
    _CLASSES[name] = cls
    _CACHE.clear()


class _List(Codec):
    def __init__(self, t: ListOf) -> None:
        super().__init__(t)
        self.item = codec_for(t.item)

    def check(self, v: Any) -> list[Any]:
        if type(v) is not list:
            self.pin_ok(v)
            if not isinstance(v, (list, tuple)):
                raise self.mismatch(v)
        check = self.item.check
        out = []
        i = 0
        try:
            for i, x in enumerate(v):
                out.append(check(x))
            return out
        except TypeMismatch as err:
            err.path.insert(0, f"[{i}]")
            raise

    def enc(self, v: Any, bufs: list[Any]) -> list[Any]:
        if type(v) is not list:
            self.pin_ok(v)
            if not isinstance(v, (list, tuple)):
                raise self.mismatch(v)
        enc = self.item.enc
        out = []
        i = 0
        try:
            for i, x in enumerate(v):
                out.append(enc(x, bufs))
        except TypeMismatch as err:
            err.path.insert(0, f"[{i}]")
            raise
        return out

    def dec(self, o: Any, bufs: Sequence[Any]) -> list[Any]:
        if type(o) is not list:
            raise self.mismatch(o)
        dec = self.item.dec
        out = []
        i = 0
        try:
            for i, x in enumerate(o):
                out.append(dec(x, bufs))
        except TypeMismatch as err:
            err.path.insert(0, f"[{i}]")
            raise
        return out


class _Tuple(Codec):
    def __init__(self, t: TupleOf) -> None:
        super().__init__(t)
        self.items = [codec_for(i) for i in t.items]

    def _shape(self, v: Any) -> None:
        if not isinstance(v, (tuple, list)):
            raise self.mismatch(v)
        if len(v) != len(self.items):
            raise self.mismatch(v, f" of length {len(v)}")

    def check(self, v: Any) -> tuple[Any, ...]:
        self.pin_ok(v)
        self._shape(v)
        out = []
        i = 0
        try:
            for i, c in enumerate(self.items):
                out.append(c.check(v[i]))
            return tuple(out)
        except TypeMismatch as err:
            err.path.insert(0, f"[{i}]")
            raise

    def enc(self, v: Any, bufs: list[Any]) -> list[Any]:
        self.pin_ok(v)
        self._shape(v)
        out = []
        i = 0
        try:
            for i, c in enumerate(self.items):
                out.append(c.enc(v[i], bufs))
        except TypeMismatch as err:
            err.path.insert(0, f"[{i}]")
            raise
        return out

    def dec(self, o: Any, bufs: Sequence[Any]) -> tuple[Any, ...]:
        if type(o) is not list or len(o) != len(self.items):
            raise self.mismatch(o)
        out = []
        i = 0
        try:
            for i, c in enumerate(self.items):
                out.append(c.dec(o[i], bufs))
        except TypeMismatch as err:
            err.path.insert(0, f"[{i}]")
            raise
        return tuple(out)

    def is_unit(self) -> bool:
        return not self.items


class _Record(Codec):
    def __init__(self, t: RecordOf, cls: type[Record] = Record, display: str | None = None) -> None:
        super().__init__(t, display)
        self.fields = [(k, codec_for(v)) for k, v in t.fields]
        self.names = frozenset(k for k, _ in t.fields)
        self.cls = cls

    def _keys(self, v: Any) -> None:
        if not isinstance(v, Mapping):
            raise self.mismatch(v)
        if len(v) != len(self.fields) or any(k not in v for k in self.names):
            for k, c in self.fields:
                if k not in v:
                    raise TypeMismatch(c.display, "nothing (missing field)", [f".{k}"])
            extra = sorted(str(k) for k in v if k not in self.names)
            raise self.mismatch(v, f" with unexpected field(s) {', '.join(extra)}")

    def check(self, v: Any) -> Record:
        self._keys(v)
        self.pin_ok(v)
        out = {}
        k = ""
        try:
            for k, c in self.fields:
                out[k] = c.check(v[k])
        except TypeMismatch as err:
            err.path.insert(0, f".{k}")
            raise
        return self.cls._from_fields(out)

    def enc(self, v: Any, bufs: list[Any]) -> dict[str, Any]:
        self._keys(v)
        if type(v) is not dict:
            self.pin_ok(v)
        out = {}
        k = ""
        try:
            for k, c in self.fields:
                out[k] = c.enc(v[k], bufs)
        except TypeMismatch as err:
            err.path.insert(0, f".{k}")
            raise
        return out

    def dec(self, o: Any, bufs: Sequence[Any]) -> Record:
        if type(o) is not dict:
            raise self.mismatch(o)
        if len(o) != len(self.fields):
            self._keys(o)
        out = {}
        k = ""
        try:
            for k, c in self.fields:
                out[k] = c.dec(o[k], bufs)
        except KeyError:
            raise TypeMismatch(self.display, "a map without field " + repr(k)) from None
        except TypeMismatch as err:
            err.path.insert(0, f".{k}")
            raise
        return self.cls._from_fields(out)


class _Unit(Codec):
    """A named type defined as ``()``: its value is its name (``None`` for Nothing)."""

    def __init__(self, t: Named) -> None:
        super().__init__(t)
        self.value: str | None = None if t.name == "Nothing" else t.name

    def check(self, v: Any) -> str | None:
        if v is None and self.value is None:
            return None
        if type(v) is str and v == getattr(self.type, "name", None):
            return self.value
        if type(v) in (tuple, list) and not v:
            return self.value
        raise self.mismatch(v)

    def enc(self, v: Any, bufs: list[Any]) -> list[Any]:
        self.check(v)
        return []

    def dec(self, o: Any, bufs: Sequence[Any]) -> str | None:
        if o == [] and type(o) is list:
            return self.value
        raise self.mismatch(o)

    def is_unit(self) -> bool:
        return True


class _Union(Codec):
    def __init__(self, t: UnionOf, display: str | None = None) -> None:
        super().__init__(t, display)
        self.options = [codec_for(o) for o in t.options]
        self.names: dict[str, int] = {}
        for i, o in enumerate(t.options):
            if isinstance(o, Named):
                self.names.setdefault(o.name, i)

    def _pick(self, v: Any) -> tuple[int, Any]:
        """Which option a value belongs to: returns (tag, value to check)."""
        if isinstance(v, Variant):
            tag = v.tag
            if isinstance(tag, str):
                if tag not in self.names:
                    raise self.mismatch(v, f" (no option named {tag})")
                return self.names[tag], v.value
            if isinstance(tag, int) and 0 <= tag < len(self.options):
                return tag, v.value
            raise self.mismatch(v, " (no such option)")
        pinned = getattr(v, "__pipelang_type__", None)
        if pinned is not None:
            for i, o in enumerate(self.options):
                if _same(pinned, o.type):
                    return i, v
            raise self.mismatch(v)
        if v is None and "Nothing" in self.names:
            return self.names["Nothing"], v
        if type(v) is str and v in self.names and self.options[self.names[v]].is_unit():
            return self.names[v], v
        # An option whose own Python type is the value's comes first: 1 through
        # `Float | Int32` is an Int32 (it would otherwise become 1.0 by the first option).
        order = sorted(range(len(self.options)), key=lambda i: not _exactly(self.options[i].type, v))
        for i in order:
            o = self.options[i]
            if _name_only(o):
                continue  # named unit options (RGB, Nothing) take only their name, handled above
            try:
                o.check(v)
            except TypeMismatch:
                continue
            return i, v
        raise self.mismatch(v)

    def check(self, v: Any) -> Any:
        i, inner = self._pick(v)
        return self.options[i].check(inner)

    def enc(self, v: Any, bufs: list[Any]) -> list[Any]:
        i, inner = self._pick(v)
        return [i, self.options[i].enc(inner, bufs)]

    def dec(self, o: Any, bufs: Sequence[Any]) -> Any:
        if type(o) is not list or len(o) != 2 or type(o[0]) is not int:
            raise self.mismatch(o)
        tag = o[0]
        if not 0 <= tag < len(self.options):
            raise self.mismatch(o, f" (tag {tag} of {len(self.options)} options)")
        value = self.options[tag].dec(o[1], bufs)
        if value is None and not _name_only(self.options[tag]):
            # None would read back as Nothing: keep the option (Just(Nothing) in a
            # Maybe<Maybe<t>> stays a Just).
            name = getattr(self.options[tag].type, "name", None)
            return Variant(name if isinstance(name, str) and self.names.get(name) == tag else tag, None)
        return value


class _Named(Codec):
    """A named type: its definition's codec, with name pinning and display."""

    def __init__(self, t: Named) -> None:
        super().__init__(t)
        self.inner: Codec | None = None  # set after construction (recursion)
        self.invariant = INVARIANTS.get(t.name)  # a rule beyond the shape (Image: data length)

    def _hold(self, v: Any) -> Any:
        if self.invariant is not None:
            why = self.invariant(v)
            if why:
                raise TypeMismatch(str(self.type), why)
        return v

    def check(self, v: Any) -> Any:
        assert self.inner is not None
        if not isinstance(self.inner, _Union):  # a union sees whether a pinned value is one of its options
            self.pin_ok(v)
        return self._hold(self.inner.check(v))

    def enc(self, v: Any, bufs: list[Any]) -> Any:
        assert self.inner is not None
        if getattr(v, "__pipelang_type__", None) is not None and not isinstance(self.inner, _Union):
            self.pin_ok(v)
        if self.invariant is not None:
            self._hold(v)
        return self.inner.enc(v, bufs)

    def dec(self, o: Any, bufs: Sequence[Any]) -> Any:
        assert self.inner is not None
        return self._hold(self.inner.dec(o, bufs))

    def is_unit(self) -> bool:
        return self.inner is not None and self.inner.is_unit()


_NATIVE = (type(None), bool, int, float, str, bytes)
_EXACT = {
    int: ("Int32", "Int64", "UInt32", "UInt64"),
    float: ("Float", "Double"),
    bool: ("Bool",),
    str: ("String", "Char"),
    bytes: ("Bytes",),
}


def _exactly(t: Type, v: Any) -> bool:
    """The value's own Python type is this atomic type's (an int for Int32, not Float)."""
    return isinstance(t, Atomic) and t.name in _EXACT.get(type(v), ())


def _name_only(c: Codec) -> bool:
    """A named unit type (``RGB := ()``, ``Nothing``): its value is its name."""
    return isinstance(c, _Unit) or (isinstance(c, _Named) and isinstance(c.inner, _Unit))


class _Dynamic(Codec):
    """An unbound type variable: any msgpack-native value (no extension types)."""

    def check(self, v: Any) -> Any:
        if type(v) is msgpack.ExtType:
            raise self.mismatch(v, " (extension types are not values)")
        if isinstance(v, _NATIVE):
            if type(v) is int and not -(2**63) <= v < 2**64:
                raise self.mismatch(v, " out of the 64-bit range")
            return v
        if isinstance(v, (list, tuple)):
            items = []
            i = 0
            try:
                for i, x in enumerate(v):
                    items.append(self.check(x))
                return items
            except TypeMismatch as err:
                err.path.insert(0, f"[{i}]")
                raise
        if isinstance(v, Mapping):
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise self.mismatch(v, " with a non-string key")
                try:
                    out[k] = self.check(x)
                except TypeMismatch as err:
                    err.path.insert(0, f".{k}")
                    raise
            return out
        if isinstance(v, (bytearray, memoryview)):
            return bytes(v)
        raise TypeMismatch("a msgpack-native value", describe(v))

    def enc(self, v: Any, bufs: list[Any]) -> Any:
        return self.check(v)

    def dec(self, o: Any, bufs: Sequence[Any]) -> Any:
        return self.check(o)


_CACHE: dict[Type, Codec] = {}
_CACHE_LOCK = threading.RLock()
_BY_ID: dict[int, tuple[Type, Codec]] = {}


def codec_for(t: Type) -> Codec:
    """The compiled codec of ``t`` (cached; named types are resolved lazily and may recurse)."""
    hit = _BY_ID.get(id(t))  # hashing a type walks all of it: look up the object first
    if hit is not None and hit[0] is t:
        return hit[1]
    c = _CACHE.get(t)
    if c is not None:
        if len(_BY_ID) >= 4096:  # types made afresh per call must not grow it without bound
            _BY_ID.clear()
        _BY_ID[id(t)] = (t, c)  # the entry holds t: its id cannot be reused meanwhile
        return c
    with _CACHE_LOCK:
        c = _CACHE.get(t)
        if c is not None:
            return c
        return _compile(t)


def _compile(t: Type) -> Codec:
    if isinstance(t, Atomic):
        if t.name in _INT_RANGES:
            c: Codec = _Int(t)
        elif t.name in ("Float", "Double"):
            c = _Float(t)
        elif t.name == "Bool":
            c = _Bool(t)
        elif t.name in ("String", "Char"):
            c = _Str(t)
        else:
            c = _Bytes(t)
    elif isinstance(t, Var):
        c = _Dynamic(t)
    elif isinstance(t, ListOf):
        c = _List(t)
    elif isinstance(t, TupleOf):
        c = _Tuple(t)
    elif isinstance(t, RecordOf):
        c = _Record(t)
    elif isinstance(t, UnionOf):
        c = _Union(t)
    else:
        body = resolve(t)
        if isinstance(body, TupleOf) and not body.items and not t.args:
            c = _Unit(t)  # `RGB := ()`: its value is its name (`Just<()>` holds a `()`)
        else:
            named = _Named(t)
            _CACHE[t] = named  # before the body: a recursive reference finds it
            try:
                if isinstance(body, RecordOf):
                    named.inner = _Record(body, _CLASSES.get(t.name, Record), str(t))
                elif isinstance(body, UnionOf):
                    named.inner = _Union(body, str(t))
                else:
                    named.inner = codec_for(body)
            except BaseException:
                _CACHE.pop(t, None)
                raise
            _install(named)
            return named
    if isinstance(c, (_List, _Tuple, _Record)):
        _install(c)  # generated checks, the generic codec behind them (pipelogic.types._fast)
    _CACHE[t] = c
    return c


def _no_fast_path(c: Codec) -> None:
    pass


# Gives a structured codec its generated fast paths: pipelogic.types._fast installs itself
# here when it is imported (it builds on this module, so this module cannot import it).
_install: Callable[[Codec], None] = _no_fast_path


def set_fast_paths(install: Callable[[Codec], None]) -> None:
    """Let ``install`` give each new structured codec its fast paths (the ``_fast`` module)."""
    global _install
    _install = install


def decode_error(err: Exception, where: str = "") -> DecodeError:
    prefix = f"{where}: " if where else ""
    return DecodeError(f"{prefix}{err}")
