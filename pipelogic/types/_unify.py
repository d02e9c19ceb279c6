"""Connection compatibility: can values of a producer's type feed a consumer's type?

Unification with type variables on both sides (renamed apart), named types matched by
name and arguments. Unions: a value of ``A`` feeds a consumer of ``A | B`` (or of a named
union that has ``A`` as an option), and a producer's union feeds a consumer's union that
accepts each of its options, in any order (``Int64 | String`` feeds ``String | Int64``).
The one implicit rule: a producer of ``t`` may feed a consumer of ``Maybe<t>`` (every ``t``
value is a ``Just``); the opposite is refused since ``Nothing`` is no ``t``. Because a
consumer decodes with the producer's type, this needs no conversion on the wire.
"""

from __future__ import annotations

from pipelogic.errors import IncompatibleTypes
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

__all__ = ["is_assignable", "unify"]

_P = "p:"  # producer variables are renamed apart from consumer variables
_C = "c:"


def _rename(t: Type, prefix: str) -> Type:
    return substitute(t, {v: Var(prefix + v) for v in free_vars(t)})


def _unrename(t: Type) -> Type:
    return substitute(t, {v: Var(v[2:]) for v in free_vars(t) if v[:2] in (_P, _C)})


def _walk(t: Type, env: dict[str, Type]) -> Type:
    while isinstance(t, Var) and t.name in env:
        t = env[t.name]
    return t


def _full(t: Type, env: dict[str, Type]) -> Type:
    t = _walk(t, env)
    if isinstance(t, Var):
        return t
    return substitute(t, {v: _full(Var(v), env) for v in free_vars(t) if v in env})


def _occurs(name: str, t: Type, env: dict[str, Type]) -> bool:
    return name in free_vars(_full(t, env))


def _fail(p: Type, c: Type, path: str, env: dict[str, Type], why: str = "") -> IncompatibleTypes:
    where = f" at {path}" if path else ""
    extra = f" ({why})" if why else ""
    return IncompatibleTypes(f"cannot unify {_unrename(_full(p, env))} with {_unrename(_full(c, env))}{where}{extra}")


def _one_of(p: Type, c: Type, options: tuple[Type, ...], env: dict[str, Type], path: str) -> None:
    """Unify ``p`` with the first option of the consumer's union it fits (bindings of a
    failed try are discarded)."""
    for option in options:
        trial = dict(env)
        try:
            _unify(p, option, trial, path)
        except IncompatibleTypes:
            continue
        env.update(trial)
        return
    raise _fail(p, c, path, env, "no option of the union accepts it")


def _union_body(t: Named) -> UnionOf | None:
    from pipelogic.errors import TypeDefinitionError
    from pipelogic.types._registry import resolve

    try:
        body = resolve(t)
    except TypeDefinitionError:
        return None
    return body if isinstance(body, UnionOf) else None


def _unify(p: Type, c: Type, env: dict[str, Type], path: str) -> None:
    p = _walk(p, env)
    c = _walk(c, env)
    if p == c:
        return
    if isinstance(p, Var) or isinstance(c, Var):
        var, other = (p, c) if isinstance(p, Var) else (c, p)
        assert isinstance(var, Var)
        if _occurs(var.name, other, env):
            raise _fail(p, c, path, env, "infinite type")
        env[var.name] = other
        return
    if (
        isinstance(c, Named)
        and c.name == "Maybe"
        and len(c.args) == 1
        and not (isinstance(p, Named) and p.name == "Maybe")
    ):
        _unify(p, c.args[0], env, path)  # t -> Maybe<t>: the value is a Just
        return
    if isinstance(p, Atomic) and isinstance(c, Atomic):
        if p.name != c.name:
            raise _fail(p, c, path, env)
        return
    if isinstance(p, ListOf) and isinstance(c, ListOf):
        _unify(p.item, c.item, env, f"{path}[]")
        return
    if isinstance(p, TupleOf) and isinstance(c, TupleOf):
        if len(p.items) != len(c.items):
            raise _fail(p, c, path, env, f"{len(p.items)} vs {len(c.items)} elements")
        for i, (a, b) in enumerate(zip(p.items, c.items)):
            _unify(a, b, env, f"{path}[{i}]")
        return
    if isinstance(p, RecordOf) and isinstance(c, RecordOf):
        pf = dict(p.fields)
        cf = dict(c.fields)
        if set(pf) != set(cf):
            missing = sorted(set(cf) - set(pf))
            extra = sorted(set(pf) - set(cf))
            bits = []
            if missing:
                bits.append("producer lacks " + ", ".join(missing))
            if extra:
                bits.append("consumer lacks " + ", ".join(extra))
            raise _fail(p, c, path, env, "; ".join(bits))
        for k, _ in c.fields:
            _unify(pf[k], cf[k], env, f"{path}.{k}")
        return
    if isinstance(p, UnionOf) and isinstance(c, UnionOf):
        if len(p.options) == len(c.options):
            trial = dict(env)
            try:
                for i, (a, b) in enumerate(zip(p.options, c.options)):
                    _unify(a, b, trial, f"{path}<option {i}>")
            except IncompatibleTypes:
                pass
            else:
                env.update(trial)
                return
        # Options in any order, and a producer of fewer options than the consumer takes:
        # each option produced must be one the consumer accepts.
        for i, a in enumerate(p.options):
            _one_of(a, c, c.options, env, f"{path}<option {i}>")
        return
    if isinstance(c, UnionOf):
        _one_of(p, c, c.options, env, path)  # an A feeds an A | B
        return
    if isinstance(c, Named) and not (isinstance(p, Named) and p.name == c.name):
        body = _union_body(c)
        if body is not None:
            _one_of(p, c, body.options, env, path)  # RGB feeds ImageFormat (RGB | BGR | ...)
            return
    if isinstance(p, Named) and isinstance(c, Named):
        if p.name != c.name or len(p.args) != len(c.args):
            raise _fail(p, c, path, env, "named types match by name")
        for i, (a, b) in enumerate(zip(p.args, c.args)):
            _unify(a, b, env, f"{path}<{p.name} argument {i}>")
        return
    raise _fail(p, c, path, env)


def unify(producer: Type, consumer: Type) -> tuple[dict[str, Type], dict[str, Type]]:
    """Unify a producer's type with a consumer's.

    Returns the bindings of the producer's and of the consumer's type variables (each
    fully resolved, in the variables' own names). Raises :class:`IncompatibleTypes` saying
    where unification failed.
    """
    env: dict[str, Type] = {}
    _unify(_rename(producer, _P), _rename(consumer, _C), env, "")
    pb: dict[str, Type] = {}
    cb: dict[str, Type] = {}
    for name in env:
        target = pb if name.startswith(_P) else cb
        target[name[2:]] = _unrename(_full(Var(name), env))
    return pb, cb


def is_assignable(producer: Type, consumer: Type) -> bool:
    """True if values of ``producer`` may flow into an input of type ``consumer``."""
    try:
        unify(producer, consumer)
    except IncompatibleTypes:
        return False
    return True
