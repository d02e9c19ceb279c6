"""Parsers for pipelang type expressions, definitions and literals.

Grammar (``|`` binds loosest; everything else is an atom)::

    definition := UName ('<' var (',' var)* '>')? ':=' type
    type       := atom ('|' atom)*
    atom       := '[' type ']'
                | '(' ')' | '(' type ',' ')' | '(' type (',' type)+ ','? ')'
                | '(' type ')'                      -- grouping
                | '{' (name ':' type (',' name ':' type)* ','?)? '}'
                | AtomicName | UName ('<' type (',' type)* '>')? | var

``AtomicName`` is one of Bool Char Int32 Int64 UInt32 UInt64 Float Double String Bytes;
an upper-case identifier names a named type, a lower-case one is a type variable;
``Enum.Variant`` (the platform's form, as in ``Image.RGB``) names the unit type ``Variant``.

Literals (for config values): ``"text"`` (JSON escapes), integers, decimals and exponents,
``true``/``false``, ``(a, b)`` tuples, ``[a, b]`` lists, ``{name: value}`` records, and a bare
upper-case identifier for a unit named type (``RGB``, ``Nothing``).

Errors are :class:`TypeParseError` with a 1-based column:
``expected ']' at column 7 in "[Int32"``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pipelogic.errors import TypeParseError
from pipelogic.limits import MAX_NESTING
from pipelogic.types._ast import (
    ATOMIC_NAMES,
    Atomic,
    ListOf,
    Named,
    RecordOf,
    TupleOf,
    Type,
    UnionOf,
    Var,
)

__all__ = ["parse_definition", "parse_literal_text", "parse_type"]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<define>:=)
    | (?P<punct>[\[\](){}<>,:|])
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
    )""",
    re.VERBOSE,
)


def _q(text: str) -> str:
    if len(text) > 120:  # a huge literal: quote its start, not all of it, in every error
        return '"' + text[:100] + f'..." ({len(text):,} characters)'
    return '"' + text + '"'


_OPEN, _CLOSE = "[({<", "])}>"


class _Tokens:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[tuple[str, str, int]] = []  # (kind, text, column)
        pos = 0
        n = len(text)
        depth = 0  # the parsers recurse per bracket: refuse what would exhaust the stack first
        while True:
            while pos < n and text[pos].isspace():
                pos += 1
            if pos >= n:
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise TypeParseError(f"unexpected character {text[pos]!r} at column {pos + 1} in {_q(text)}")
            kind = m.lastgroup or ""
            start = m.start(kind)
            if kind == "punct":
                tok = m.group(kind)
                if tok in _OPEN:
                    depth += 1
                    if depth > MAX_NESTING:
                        raise TypeParseError(
                            f"nested more than {MAX_NESTING} deep (the limit) at column {start + 1} in {_q(text)}"
                        )
                elif tok in _CLOSE:
                    depth -= 1
            self.toks.append((kind, m.group(kind), start + 1))
            pos = m.end()
        self.i = 0

    def peek(self) -> str:
        return self.toks[self.i][1] if self.i < len(self.toks) else ""

    def peek_kind(self) -> str:
        return self.toks[self.i][0] if self.i < len(self.toks) else "end"

    def column(self) -> int:
        return self.toks[self.i][2] if self.i < len(self.toks) else len(self.text) + 1

    def fail(self, expected: str) -> TypeParseError:
        found = self.peek()
        what = f", found {found!r}" if found else ""
        return TypeParseError(f"expected {expected} at column {self.column()} in {_q(self.text)}{what}")

    def take(self) -> str:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, tok: str) -> None:
        if self.peek() != tok or self.peek_kind() not in ("punct", "define"):
            raise self.fail(repr(tok))
        self.i += 1

    def accept(self, tok: str) -> bool:
        if self.peek() == tok and self.peek_kind() in ("punct", "define"):
            self.i += 1
            return True
        return False

    def at_end(self) -> bool:
        return self.i >= len(self.toks)


def _type(ts: _Tokens) -> Type:
    options = [_atom(ts)]
    while ts.accept("|"):
        options.append(_atom(ts))
    return options[0] if len(options) == 1 else UnionOf(tuple(options))


def _atom(ts: _Tokens) -> Type:
    if ts.accept("["):
        item = _type(ts)
        ts.expect("]")
        return ListOf(item)
    if ts.accept("("):
        if ts.accept(")"):
            return TupleOf(())
        first = _type(ts)
        if ts.accept(")"):
            return first  # grouping
        ts.expect(",")
        items = [first]
        while not ts.accept(")"):
            items.append(_type(ts))
            if not ts.accept(","):
                ts.expect(")")
                break
        return TupleOf(tuple(items))
    if ts.accept("{"):
        fields: list[tuple[str, Type]] = []
        seen: set[str] = set()
        while not ts.accept("}"):
            if ts.peek_kind() != "ident":
                raise ts.fail("a field name or '}'")
            col = ts.column()
            name = ts.take()
            if name in seen:
                raise TypeParseError(f"duplicate field {name!r} at column {col} in {_q(ts.text)}")
            seen.add(name)
            ts.expect(":")
            fields.append((name, _type(ts)))
            if not ts.accept(","):
                ts.expect("}")
                break
        return RecordOf(tuple(fields))
    if ts.peek_kind() == "ident":
        col = ts.column()
        ident = ts.take()
        if "." in ident:
            head, second = ident.split(".", 1)
            if not second[:1].isupper():
                raise TypeParseError(
                    f"expected Enum.Variant or namespace.Name at column {col} in {_q(ts.text)}, found {ident!r}"
                )
            if head[:1].isupper():
                # The platform's variant form: `Image.RGB` is the unit type RGB (an option of
                # an enumeration such as ImageFormat), so `Image.RGB | Image.BGR` = `RGB | BGR`.
                return Named(second)
            # A namespaced name (`workspace.BoundingBox`): one namespace here, so the name.
            ident = second
        if ident in ATOMIC_NAMES:
            return Atomic(ident)
        if ident[0].islower() or ident[0] == "_":
            return Var(ident)
        args: list[Type] = []
        if ts.accept("<"):
            args.append(_type(ts))
            while ts.accept(","):
                args.append(_type(ts))
            ts.expect(">")
        return Named(ident, tuple(args))
    raise ts.fail("a type")


def parse_type(text: str) -> Type:
    """Parse a pipelang type expression."""
    if not isinstance(text, str):
        raise TypeParseError(f"expected a type expression string, got {type(text).__name__}")
    ts = _Tokens(text)
    if ts.at_end():
        raise TypeParseError(f"expected a type at column 1 in {_q(text)}")
    t = _type(ts)
    if not ts.at_end():
        raise ts.fail("end of type")
    return t


def parse_definition(text: str) -> tuple[str, tuple[str, ...], Type]:
    """Parse ``Name<params> := expr`` into (name, params, body)."""
    ts = _Tokens(text)
    if ts.peek_kind() != "ident" or not ts.peek()[:1].isupper():
        raise ts.fail("a type name starting with an upper-case letter")
    name = ts.take()
    if name in ATOMIC_NAMES:
        raise TypeParseError(f"cannot redefine the atomic type {name} in {_q(text)}")
    params: list[str] = []
    if ts.accept("<"):
        while True:
            if ts.peek_kind() != "ident" or not ts.peek()[:1].islower():
                raise ts.fail("a lower-case type variable")
            params.append(ts.take())
            if not ts.accept(","):
                break
        ts.expect(">")
    ts.expect(":=")
    body = _type(ts)
    if not ts.at_end():
        raise ts.fail("end of definition")
    return name, tuple(params), body


class _UnitName(str):
    """A bare identifier in a literal: the value of a unit named type (``RGB``)."""


def _literal(ts: _Tokens) -> Any:
    kind = ts.peek_kind()
    if kind == "string":
        tok = ts.take()
        try:
            return json.loads(tok)
        except ValueError as exc:  # bad escape
            raise TypeParseError(f"bad string literal {tok} in {_q(ts.text)}: {exc}") from None
    if kind == "number":
        tok = ts.take()
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        return float(tok)
    if kind == "ident":
        tok = ts.take()
        if tok == "true":
            return True
        if tok == "false":
            return False
        if tok[:1].isupper():
            return _UnitName(tok)
        raise TypeParseError(f"unexpected name {tok!r} in literal {_q(ts.text)}")
    if ts.accept("["):
        items = []
        while not ts.accept("]"):
            items.append(_literal(ts))
            if not ts.accept(","):
                ts.expect("]")
                break
        return items
    if ts.accept("("):
        if ts.accept(")"):
            return ()
        first = _literal(ts)
        if ts.accept(")"):
            return first
        ts.expect(",")
        tup = [first]
        while not ts.accept(")"):
            tup.append(_literal(ts))
            if not ts.accept(","):
                ts.expect(")")
                break
        return tuple(tup)
    if ts.accept("{"):
        rec: dict[str, Any] = {}
        while not ts.accept("}"):
            if ts.peek_kind() not in ("ident", "string"):
                raise ts.fail("a field name or '}'")
            key = ts.take()
            if key.startswith('"'):
                key = json.loads(key)
            ts.expect(":")
            rec[key] = _literal(ts)
            if not ts.accept(","):
                ts.expect("}")
                break
        return rec
    raise ts.fail("a literal")


def parse_literal_text(text: str) -> Any:
    """Parse a pipelang literal into plain Python data (no type check)."""
    ts = _Tokens(text)
    if ts.at_end():
        raise TypeParseError(f"expected a literal at column 1 in {_q(text)}")
    value = _literal(ts)
    if not ts.at_end():
        raise ts.fail("end of literal")
    return value
