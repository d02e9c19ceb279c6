"""The global registry of named types, preloaded with the built-in catalog."""

from __future__ import annotations

import difflib
import threading
from importlib import resources

from pipelogic.errors import TypeDefinitionError, TypeParseError
from pipelogic.types._ast import (
    Atomic,
    ListOf,
    Named,
    RecordOf,
    TupleOf,
    Type,
    UnionOf,
    Var,
    free_vars,
    substitute,
)
from pipelogic.types._parser import parse_definition

__all__ = ["define", "known_names", "lookup", "register_named", "resolve", "check_references"]

# name -> (params, body). Guarded by a lock: registration may come from several threads.
_DEFS: dict[str, tuple[tuple[str, ...], Type]] = {}
_LOCK = threading.Lock()


def known_names() -> list[str]:
    return sorted(_DEFS)


def lookup(name: str) -> tuple[tuple[str, ...], Type]:
    try:
        return _DEFS[name]
    except KeyError:
        near = difflib.get_close_matches(name, list(_DEFS), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise TypeDefinitionError(f"unknown type {name!r}{hint}") from None


def resolve(t: Named) -> Type:
    """Expand one level of a named type application to its definition."""
    params, body = lookup(t.name)
    if len(params) != len(t.args):
        raise TypeDefinitionError(f"type {t.name} takes {len(params)} argument(s), got {len(t.args)} in {t}")
    return substitute(body, dict(zip(params, t.args)))


def check_references(t: Type, where: str, extra: dict[str, int] | None = None) -> None:
    """Raise if ``t`` names an unknown type or applies one with the wrong arity."""
    if isinstance(t, (Atomic, Var)):
        return
    if isinstance(t, ListOf):
        check_references(t.item, where, extra)
        return
    if isinstance(t, TupleOf):
        for i in t.items:
            check_references(i, where, extra)
        return
    if isinstance(t, RecordOf):
        for _, v in t.fields:
            check_references(v, where, extra)
        return
    if isinstance(t, UnionOf):
        for o in t.options:
            check_references(o, where, extra)
        return
    if extra and t.name in extra:
        arity = extra[t.name]
    else:
        try:
            arity = len(lookup(t.name)[0])
        except TypeDefinitionError as exc:
            raise TypeDefinitionError(f"{exc} in {where}") from None
    if arity != len(t.args):
        raise TypeDefinitionError(f"type {t.name} takes {arity} argument(s), got {len(t.args)} in {where}")
    for a in t.args:
        check_references(a, where, extra)


def _unguarded_self(name: str, body: Type) -> bool:
    if isinstance(body, Named):
        return body.name == name
    if isinstance(body, UnionOf):
        return any(_unguarded_self(name, o) for o in body.options)
    return False


def define(text: str) -> str:
    """Register one definition ``Name<params> := expr``; return the name.

    Idempotent: the same definition again is accepted; another one for a known name is an
    error. The body may use the name itself inside a list, tuple or record (recursion).
    """
    name, params, body = parse_definition(text)
    unbound = free_vars(body) - set(params)
    if unbound:
        raise TypeDefinitionError(f"type variable(s) {', '.join(sorted(unbound))} not declared in {text!r}")
    check_references(body, repr(text), {name: len(params)})
    if _unguarded_self(name, body):
        raise TypeDefinitionError(f"{name} is defined as itself without structure in {text!r}")
    with _LOCK:
        old = _DEFS.get(name)
        if old is not None:
            if old != (params, body):
                raise TypeDefinitionError(
                    f"type {name} is already defined as {_show(name, *old)}, "
                    f"cannot redefine it as {_show(name, params, body)}"
                )
            return name
        _DEFS[name] = (params, body)
    return name


def _show(name: str, params: tuple[str, ...], body: Type) -> str:
    head = f"{name}<{', '.join(params)}>" if params else name
    return f"{head} := {body}"


def register_named(pairs: list[tuple[str, str]] | list[list[str]]) -> None:
    """Register named types from ``(name, expr)`` pairs, in order.

    ``name`` may carry parameters (``"Pair<a>"``). Later pairs may use earlier names.
    """
    for pair in pairs:
        try:
            name, expr = pair
        except (TypeError, ValueError):
            raise TypeDefinitionError(f"expected a (name, expression) pair, got {pair!r}") from None
        define(f"{name} := {expr}")


def _load_catalog() -> None:
    text = resources.files("pipelogic.types").joinpath("catalog.pipelang").read_text("utf-8")
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            define(line)
        except (TypeParseError, TypeDefinitionError) as exc:  # a packaging bug, say where
            raise TypeDefinitionError(f"catalog.pipelang line {lineno}: {exc}") from None


_load_catalog()
