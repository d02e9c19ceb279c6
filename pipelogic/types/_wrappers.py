"""Wrappers that pin a value to an exact pipelang type and behave like the value they hold.

``Int32(5) * 2 == 10``, ``float(Double(0.5))``, ``tuple(Tuple([1.0, 2.0], "(Double, Double)"))``.
A wrapper given where another type is expected is a mismatch: it pins its type.
"""

from __future__ import annotations

from typing import Any

from pipelogic.errors import TypeMismatch
from pipelogic.types._ast import Atomic, ListOf, TupleOf, Type
from pipelogic.types._codec import Record, codec_for
from pipelogic.types._codecbase import _INT_RANGES

__all__ = [
    "Bool",
    "Bytes",
    "Char",
    "Double",
    "Float",
    "Int32",
    "Int64",
    "List",
    "Record",
    "String",
    "Tuple",
    "UInt32",
    "UInt64",
    "wrap",
]


class _IntWrapper(int):
    __slots__ = ()
    __pipelang_type__: Type

    def __new__(cls, value: Any = 0) -> _IntWrapper:
        checked = codec_for(cls.__pipelang_type__).check(int(value) if isinstance(value, str) else value)
        return super().__new__(cls, checked)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"

    def __str__(self) -> str:  # print, str() and f-strings show the number, as for an int
        return int.__repr__(self)


class Int32(_IntWrapper):
    __slots__ = ()
    __pipelang_type__ = Atomic("Int32")


class Int64(_IntWrapper):
    __slots__ = ()
    __pipelang_type__ = Atomic("Int64")


class UInt32(_IntWrapper):
    __slots__ = ()
    __pipelang_type__ = Atomic("UInt32")


class UInt64(_IntWrapper):
    __slots__ = ()
    __pipelang_type__ = Atomic("UInt64")


assert set(_INT_RANGES) == {"Int32", "Int64", "UInt32", "UInt64"}


class _FloatWrapper(float):
    __slots__ = ()
    __pipelang_type__: Type

    def __new__(cls, value: Any = 0.0) -> _FloatWrapper:
        if isinstance(value, str):
            value = float(value)
        return super().__new__(cls, codec_for(cls.__pipelang_type__).check(value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({float(self)!r})"

    def __str__(self) -> str:
        return float.__repr__(self)


class Float(_FloatWrapper):
    """A 32-bit float: the value is rounded to the nearest float32 on construction."""

    __slots__ = ()
    __pipelang_type__ = Atomic("Float")


class Double(_FloatWrapper):
    __slots__ = ()
    __pipelang_type__ = Atomic("Double")


class Bool(int):
    """A boolean (``bool`` cannot be subclassed); ``bool(b)``, ``b == True`` work."""

    __slots__ = ()
    __pipelang_type__ = Atomic("Bool")

    def __new__(cls, value: Any = False) -> Bool:
        if type(value) is not bool and not isinstance(value, Bool):
            raise TypeMismatch("Bool", f"{type(value).__name__} ({value!r})")
        return super().__new__(cls, bool(value))

    def __repr__(self) -> str:
        return f"Bool({bool(self)})"

    def __str__(self) -> str:
        return str(bool(self))


class Char(str):
    __slots__ = ()
    __pipelang_type__ = Atomic("Char")

    def __new__(cls, value: Any) -> Char:
        return super().__new__(cls, codec_for(cls.__pipelang_type__).check(value))


class String(str):
    __slots__ = ()
    __pipelang_type__ = Atomic("String")

    def __new__(cls, value: Any = "") -> String:
        return super().__new__(cls, codec_for(cls.__pipelang_type__).check(value))


class Bytes(bytes):
    __slots__ = ()
    __pipelang_type__ = Atomic("Bytes")

    def __new__(cls, value: Any = b"") -> Bytes:
        return super().__new__(cls, codec_for(cls.__pipelang_type__).check(value))


def _type_arg(t: str | Type) -> Type:
    from pipelogic.types._api import as_type

    return as_type(t)


class List(list[Any]):
    """``List(values, "[Int32]")``: a list pinned to a list type, validated on construction."""

    __pipelang_type__: Type | None = None

    def __init__(self, values: Any = (), type: str | Type = "[a]") -> None:  # noqa: A002
        t = _type_arg(type)
        if not isinstance(_resolved(t), ListOf):
            raise TypeMismatch("a list type", str(t))
        super().__init__(codec_for(t).check(list(values)))
        self.__pipelang_type__ = t


class Tuple(tuple[Any, ...]):
    """``Tuple(values, "(Double, Double)")``: a tuple pinned to a tuple type."""

    __pipelang_type__: Type | None = None

    def __new__(cls, values: Any = (), type: str | Type = "()") -> Tuple:  # noqa: A002
        t = _type_arg(type)
        if not isinstance(_resolved(t), TupleOf):
            raise TypeMismatch("a tuple type", str(t))
        obj = super().__new__(cls, codec_for(t).check(tuple(values)))
        obj.__pipelang_type__ = t
        return obj


def _resolved(t: Type) -> Type:
    from pipelogic.types._ast import Named
    from pipelogic.types._registry import resolve

    while isinstance(t, Named):
        t = resolve(t)
    return t


_ATOMIC_WRAPPERS: dict[str, type] = {
    "Int32": Int32,
    "Int64": Int64,
    "UInt32": UInt32,
    "UInt64": UInt64,
    "Float": Float,
    "Double": Double,
    "Bool": Bool,
    "Char": Char,
    "String": String,
    "Bytes": Bytes,
}


def wrap(value: Any, t: Type) -> Any:
    """Validate ``value`` against ``t`` and return it in the wrapper of ``t``.

    Atomics get their wrapper class, lists :class:`List`, tuples :class:`Tuple`, records
    :class:`Record` (or their ``pipelogic.cv`` class); unions and unit types give the
    validated plain value.
    """
    base = _resolved(t)
    if isinstance(base, Atomic):
        return _ATOMIC_WRAPPERS[base.name](codec_for(t).check(value))
    checked = codec_for(t).check(value)
    if isinstance(base, ListOf):
        out_l = List.__new__(List)
        list.__init__(out_l, checked)
        out_l.__pipelang_type__ = t
        return out_l
    if isinstance(base, TupleOf) and base.items:
        out_t = tuple.__new__(Tuple, checked)
        out_t.__pipelang_type__ = t
        return out_t
    if isinstance(checked, Record):
        checked.__pipelang_type__ = t
    return checked
