"""Fast paths for the codecs of plain structured types, generated per type.

A record such as ``{id: Int64, label: String, score: Double, box: (Double, Double,
Double, Double)}`` costs about 7 µs to encode and decode through the generic codec (a
method call, a ``try`` and a path bookkeeping per field), against about 1 µs for msgpack
alone. For types built from integers, ``Double``/``Float``, ``Bool``, ``String``/``Char``,
tuples, lists, records and named types without an invariant, this module generates one
flat Python function per type, the checks unrolled:

- the encoder only *checks*: a value that passes is already its own wire form (a plain
  dict with exactly the record's keys, tuples or lists, in-range ints, floats, ASCII
  strings), so it is handed to msgpack as it is, with no copy;
- the decoder checks the msgpack-decoded data and builds the value (``Record``s, tuples).

Either hands over to the generic codec at the first thing it does not expect, which runs
from the start and raises its usual error with the path inside the value: a fast path
never changes what is accepted, what comes out, or what an error says
(``tests/unit/test_types_fast.py`` checks that against the generic codec on random types,
values and mutations). Types with ``Bytes`` (out-of-band buffers), unions, type variables,
units or invariants (``Image``) keep the generic codec.
"""

from __future__ import annotations

import math
import types
from typing import Any

from pipelogic.errors import CodecUnsupported
from pipelogic.types import _atoms as A
from pipelogic.types import _codec as C
from pipelogic.types._codecbase import _F32_MAX

__all__ = ["install"]

_MISSING = object()
_MAX_LINES = 400  # a type whose checks would be longer keeps the generic codec


class _Gen:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, Any] = {
            "_M": _MISSING,
            "_isfinite": math.isfinite,
            "_new": dict.__new__,
            "_upd": dict.update,
            "_F32": _F32_MAX,
        }
        self.n = 0
        self.open: set[int] = set()  # named codecs being expanded (a recursive type is not inlined)

    def var(self) -> str:
        self.n += 1
        return f"x{self.n}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)
        if len(self.lines) > _MAX_LINES:
            raise CodecUnsupported


def _named_inner(g: _Gen, c: Any) -> Any:
    if not isinstance(c, C._Named) or c.invariant is not None or c.inner is None or id(c) in g.open:
        raise CodecUnsupported
    return c.inner


def _check(g: _Gen, c: Any, x: str, ind: int, fail: str) -> None:
    """Lines that ``return {fail}`` unless ``x`` is a valid value of ``c`` in wire form."""
    kind = type(c)
    if kind is A._Int:
        g.emit(ind, f"if type({x}) is not int or not {c.lo} <= {x} <= {c.hi}: return {fail}")
    elif kind is A._Float and not c.single:
        g.emit(ind, f"if type({x}) is not float: return {fail}")
    elif kind is A._Bool:
        g.emit(ind, f"if type({x}) is not bool: return {fail}")
    elif kind is A._Str and not c.char:
        g.emit(ind, f"if type({x}) is not str or not {x}.isascii(): return {fail}")
    elif kind is C._Tuple:
        g.emit(
            ind, f"if (type({x}) is not tuple and type({x}) is not list) or len({x}) != {len(c.items)}: return {fail}"
        )
        ys = [g.var() for _ in c.items]
        if ys:
            g.emit(ind, f"{', '.join(ys)}{',' if len(ys) == 1 else ''} = {x}")
        for y, item in zip(ys, c.items):
            _check(g, item, y, ind, fail)
    elif kind is C._List:
        g.emit(ind, f"if type({x}) is not list and type({x}) is not tuple: return {fail}")
        y = g.var()
        g.emit(ind, f"for {y} in {x}:")
        g.emit(ind + 1, "pass")
        _check(g, c.item, y, ind + 1, fail)
    elif kind is C._Record:
        # A plain dict with exactly these keys, in this order, is its own wire form; a pinned
        # Record goes the generic way, which checks its pin.
        # The keys in the record's order, so the wire form is the generic one byte for byte.
        keys = g.var()
        g.ns[f"_{keys}"] = tuple(k for k, _ in c.fields)
        # A Record of this codec's class that carries no pin of its own (a decoded input
        # passed on) is as good as a dict; its class's pin, if any, is this type.
        cls = f"_cls{id(c.cls)}"
        g.ns[cls] = c.cls
        g.emit(
            ind,
            f"if (type({x}) is not dict and (type({x}) is not {cls} or '__pipelang_type__' in {x}.__dict__)) "
            f"or tuple({x}) != _{keys}: return {fail}",
        )
        for k, fc in c.fields:
            y = g.var()
            g.emit(ind, f"{y} = {x}[{k!r}]")
            _check(g, fc, y, ind, fail)
    elif kind is C._Named:
        inner = _named_inner(g, c)
        g.open.add(id(c))
        _check(g, inner, x, ind, fail)
        g.open.discard(id(c))
    else:
        raise CodecUnsupported


def _plain(c: Any) -> bool:
    """Whether the decoded form of ``c`` is the msgpack data itself (no conversion)."""
    if type(c) in (A._Int, A._Float, A._Bool, A._Str):
        return True
    return type(c) is C._List and _plain(c.item)


def _dec(g: _Gen, c: Any, x: str, ind: int, fail: str) -> str:
    """Lines that ``return {fail}`` unless ``x`` (msgpack data) decodes as ``c``; returns
    the expression of the decoded value."""
    kind = type(c)
    if kind is A._Int:
        g.emit(ind, f"if type({x}) is not int or not {c.lo} <= {x} <= {c.hi}: return {fail}")
        return x
    if kind is A._Float:
        g.emit(ind, f"if type({x}) is not float: return {fail}")
        if c.single:
            g.emit(ind, f"if ({x} > _F32 or {x} < -_F32) and _isfinite({x}): return {fail}")
        return x
    if kind is A._Bool:
        g.emit(ind, f"if type({x}) is not bool: return {fail}")
        return x
    if kind is A._Str:
        g.emit(ind, f"if type({x}) is not str{f' or len({x}) != 1' if c.char else ''}: return {fail}")
        return x
    if kind is C._Tuple:
        g.emit(ind, f"if type({x}) is not list or len({x}) != {len(c.items)}: return {fail}")
        ys = [g.var() for _ in c.items]
        if ys:
            g.emit(ind, f"{', '.join(ys)}{',' if len(ys) == 1 else ''} = {x}")
        parts = [_dec(g, item, y, ind, fail) for y, item in zip(ys, c.items)]
        return f"({', '.join(parts)}{',' if len(parts) == 1 else ''})"
    if kind is C._List:
        g.emit(ind, f"if type({x}) is not list: return {fail}")
        y = g.var()
        if _plain(c.item):
            g.emit(ind, f"for {y} in {x}:")
            g.emit(ind + 1, "pass")
            _dec(g, c.item, y, ind + 1, fail)
            return x
        out = g.var()
        g.emit(ind, f"{out} = []")
        g.emit(ind, f"for {y} in {x}:")
        r = _dec(g, c.item, y, ind + 1, fail)
        g.emit(ind + 1, f"{out}.append({r})")
        return out
    if kind is C._Record:
        g.emit(ind, f"if type({x}) is not dict or len({x}) != {len(c.fields)}: return {fail}")
        items = []
        for k, fc in c.fields:
            y = g.var()
            g.emit(ind, f"{y} = {x}.get({k!r}, _M)")
            items.append(f"{k!r}: {_dec(g, fc, y, ind, fail)}")
        cls = f"_cls{id(c.cls)}"
        g.ns[cls] = c.cls
        rec = g.var()
        g.emit(ind, f"{rec} = _new({cls})")
        g.emit(ind, f"_upd({rec}, {{{', '.join(items)}}})")
        return rec
    if kind is C._Named:
        inner = _named_inner(g, c)
        g.open.add(id(c))
        r = _dec(g, inner, x, ind, fail)
        g.open.discard(id(c))
        return r
    raise CodecUnsupported


def _compile(c: C.Codec, kind: str) -> Any:
    """``enc(v, bufs)`` or ``dec(o, bufs)`` for ``c``: the generated checks, and the generic
    method (bound as ``_generic``) wherever one fails."""
    g = _Gen()
    g.ns["_generic"] = types.MethodType(getattr(type(c), kind), c)
    # Builtins as default arguments: locals, not a global and a builtins lookup each.
    fast = "type=type, int=int, float=float, str=str, bool=bool, tuple=tuple, list=list, dict=dict, len=len"
    if kind == "enc":
        _check(g, c, "v", 1, "_generic(v, bufs)")
        src = f"def enc(v, bufs, {fast}):\n" + "\n".join(g.lines) + "\n    return v\n"
    else:
        r = _dec(g, c, "o", 1, "_generic(o, bufs)")
        src = f"def dec(o, bufs, {fast}):\n" + "\n".join(g.lines) + f"\n    return {r}\n"
    exec(src, g.ns)  # generated from the codec tree: names and literals only
    return g.ns[kind]


def install(c: C.Codec) -> None:
    """Give the codec ``c`` (a tuple, list, record or named type) fast ``enc``/``dec``,
    generated on first use (when every codec it refers to is complete); a type this
    module does not handle keeps the generic methods."""

    def first(kind: str) -> Any:
        def compile_then_call(v: Any, bufs: Any) -> Any:
            try:
                fn = _compile(c, kind)
            except CodecUnsupported:
                fn = types.MethodType(getattr(type(c), kind), c)
            setattr(c, kind, fn)
            return fn(v, bufs)

        return compile_then_call

    c.enc = first("enc")  # type: ignore[method-assign]
    c.dec = first("dec")  # type: ignore[method-assign]


C.set_fast_paths(install)
