"""Functions of the public ``pipelogic.types`` API over types and values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from msgpack import unpackb as _unpackb

from pipelogic.errors import DecodeError, TypeMismatch, TypeParseError
from pipelogic.types._ast import Atomic, Named, Type
from pipelogic.types._codec import codec_for
from pipelogic.types._pack import pack
from pipelogic.types._parser import _UnitName, parse_literal_text, parse_type
from pipelogic.types._registry import check_references, lookup

__all__ = [
    "as_type",
    "create_bool",
    "create_bytes",
    "create_char",
    "create_double",
    "create_float",
    "create_int32",
    "create_int64",
    "create_string",
    "create_type",
    "create_uint32",
    "create_uint64",
    "decode",
    "decode_frame",
    "encode",
    "encode_frame",
    "get_type",
    "parse_literal",
    "validate",
]


def create_type(expr: str) -> Type:
    """Parse a pipelang type expression and check that every name it uses is known.

    A definition ``Name<params> := expr`` registers the named type (as ``register_named``
    does, idempotently) and returns it: ``create_type("Point := {x: Double, y: Double}")``."""
    if isinstance(expr, str) and ":=" in expr:
        from pipelogic.types._ast import Var
        from pipelogic.types._registry import define

        name = define(expr)
        params, _ = lookup(name)
        return Named(name, tuple(Var(p) for p in params))
    t = parse_type(expr)
    check_references(t, repr(expr))
    return t


def as_type(t: str | Type) -> Type:
    """Accept a type or a type expression."""
    return create_type(t) if isinstance(t, str) else t


def get_type(name: str) -> Type:
    """The named type ``name``; an unknown name is an error listing near matches."""
    params, _ = lookup(name)
    if params:
        raise TypeParseError(f"type {name} takes {len(params)} argument(s); use create_type")
    return Named(name)


def create_int32() -> Type:
    return Atomic("Int32")


def create_int64() -> Type:
    return Atomic("Int64")


def create_uint32() -> Type:
    return Atomic("UInt32")


def create_uint64() -> Type:
    return Atomic("UInt64")


def create_float() -> Type:
    return Atomic("Float")


def create_double() -> Type:
    return Atomic("Double")


def create_bool() -> Type:
    return Atomic("Bool")


def create_char() -> Type:
    return Atomic("Char")


def create_string() -> Type:
    return Atomic("String")


def create_bytes() -> Type:
    return Atomic("Bytes")


def validate(value: Any, t: str | Type) -> Any:
    """Check ``value`` against ``t`` and return it normalised.

    Raises :class:`TypeMismatch` whose message gives the path inside the value:
    ``boxes[3].rectangle.x: expected Double, got str ('abc')``.
    """
    return codec_for(as_type(t)).check(value)


def encode(value: Any, t: str | Type) -> tuple[Any, list[Any]]:
    """Validate and turn ``value`` into msgpack-ready data plus out-of-band buffers."""
    bufs: list[Any] = []
    return codec_for(as_type(t)).enc(value, bufs), bufs


def encode_frame(value: Any, t: str | Type) -> tuple[bytes, list[Any]]:
    """``encode`` then msgpack: the value frame and its out-of-band buffer frames."""
    bufs: list[Any] = []
    return pack(codec_for(create_type(t) if isinstance(t, str) else t).enc(value, bufs)), bufs


def decode(data: Any, t: str | Type, bufs: Sequence[Any] = ()) -> Any:
    """Strictly turn msgpack-decoded data back into a value; raises only DecodeError."""
    try:
        return codec_for(as_type(t)).dec(data, bufs)
    except TypeMismatch as err:
        raise DecodeError(str(err)) from None


def decode_frame(frame: bytes | memoryview, t: str | Type, bufs: Sequence[Any] = ()) -> Any:
    """Decode one value frame (and its buffers); any bad input raises DecodeError."""
    codec = codec_for(create_type(t) if isinstance(t, str) else t)
    try:
        return codec.dec(_unpackb(frame, raw=False, strict_map_key=True), bufs)
    except TypeMismatch as err:
        raise DecodeError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - totality: msgpack raises a zoo of types
        raise DecodeError(f"malformed msgpack value: {type(err).__name__}: {err}") from None


def parse_literal(text: str, t: str | Type) -> Any:
    """Parse a pipelang literal (``(1.0, 2.0)``, ``"text"``, ``[1, 2]``, ``{a: 1}``) and
    check it against ``t``. For a String or Char slot, text that is not a literal is taken
    as the string itself (so ``language=en`` works on a command line)."""
    ty = as_type(t)
    try:
        value = parse_literal_text(text)
    except TypeParseError:
        if ty in (Atomic("String"), Atomic("Char")):
            value = text
        else:
            raise
    if isinstance(value, _UnitName):
        value = None if value == "Nothing" else str(value)
    elif isinstance(value, str) and ty in (Atomic("String"), Atomic("Char")):
        pass
    return validate(value, ty)
