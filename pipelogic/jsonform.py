"""The JSON form of typed values, used by jsonl sources, sinks and dead-letter files.

Records are objects, lists and tuples arrays, ``Bytes`` base64 strings, Nothing null, unit
names strings; everything else as JSON has it.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

from pipelogic.errors import TypeMismatch
from pipelogic.types import Atomic, ListOf, Named, RecordOf, TupleOf, Type, UnionOf, codec_for
from pipelogic.types._registry import resolve

__all__ = ["from_json", "to_display", "to_json"]


def to_json(value: Any) -> Any:
    """A JSON-serialisable form of a decoded value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return str(value)


def to_display(value: Any, max_bytes: int = 48) -> Any:
    """A JSON form for a person to read: like :func:`to_json`, but a ``Bytes`` value longer
    than ``max_bytes`` shows as its size (``<921,600 bytes>``), not as a screen of base64."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        n = value.nbytes if isinstance(value, memoryview) else len(value)
        return f"<{n:,} bytes>" if n > max_bytes else base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): to_display(v, max_bytes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_display(v, max_bytes) for v in value]
    return to_json(value)


def _unb64(obj: Any) -> Any:
    if isinstance(obj, str):
        try:
            return base64.b64decode(obj, validate=True)
        except ValueError:
            raise TypeMismatch("Bytes (base64 text)", f"str ({obj[:20]!r})") from None
    return obj


def from_json(obj: Any, t: Type) -> Any:
    """Turn parsed JSON into a valid value of ``t`` (raises TypeMismatch with a path)."""
    return codec_for(t).check(_convert(obj, t))


def _convert(obj: Any, t: Type) -> Any:
    while isinstance(t, Named):
        body = resolve(t)
        if isinstance(body, TupleOf) and not body.items:
            return obj
        t = body
    if isinstance(t, Atomic):
        return _unb64(obj) if t.name == "Bytes" else obj
    if isinstance(t, ListOf) and isinstance(obj, list):
        return [_convert(x, t.item) for x in obj]
    if isinstance(t, TupleOf) and isinstance(obj, list) and len(obj) == len(t.items):
        return tuple(_convert(x, i) for x, i in zip(obj, t.items))
    if isinstance(t, RecordOf) and isinstance(obj, dict):
        fields = dict(t.fields)
        return {k: _convert(v, fields[k]) if k in fields else v for k, v in obj.items()}
    if isinstance(t, UnionOf):
        for o in t.options:
            try:
                return codec_for(o).check(_convert(obj, o))
            except TypeMismatch:
                continue
    return obj
