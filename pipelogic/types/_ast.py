"""Type terms of pipelang: immutable, hashable, printable back to pipelang syntax."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ATOMIC_NAMES",
    "Atomic",
    "ListOf",
    "Named",
    "RecordOf",
    "TupleOf",
    "Type",
    "UnionOf",
    "Var",
    "free_vars",
    "substitute",
]

ATOMIC_NAMES = frozenset(["Bool", "Char", "Int32", "Int64", "UInt32", "UInt64", "Float", "Double", "String", "Bytes"])


@dataclass(frozen=True, slots=True)
class Atomic:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Type

    def __str__(self) -> str:
        return f"[{self.item}]"


@dataclass(frozen=True, slots=True)
class TupleOf:
    items: tuple[Type, ...]

    def __str__(self) -> str:
        if len(self.items) == 1:
            return f"({self.items[0]},)"
        return "(" + ", ".join(map(str, self.items)) + ")"


@dataclass(frozen=True, slots=True)
class RecordOf:
    fields: tuple[tuple[str, Type], ...]

    def __str__(self) -> str:
        return "{" + ", ".join(f"{k}: {v}" for k, v in self.fields) + "}"


@dataclass(frozen=True, slots=True)
class UnionOf:
    options: tuple[Type, ...]

    def __str__(self) -> str:
        return " | ".join(f"({o})" if isinstance(o, UnionOf) else str(o) for o in self.options)


@dataclass(frozen=True, slots=True)
class Named:
    name: str
    args: tuple[Type, ...] = ()

    def __post_init__(self) -> None:
        if not self.args and self.name in DEFAULT_ARGS:  # `Rectangle` is `Rectangle<Double>`
            object.__setattr__(self, "args", DEFAULT_ARGS[self.name])

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}<" + ", ".join(map(str, self.args)) + ">"


@dataclass(frozen=True, slots=True)
class Var:
    name: str

    def __str__(self) -> str:
        return self.name


Type = Atomic | ListOf | TupleOf | RecordOf | UnionOf | Named | Var


def substitute(t: Type, env: dict[str, Type]) -> Type:
    """Replace type variables by their bindings in ``env`` (unbound ones stay)."""
    if not env:
        return t
    if isinstance(t, Var):
        return env.get(t.name, t)
    if isinstance(t, Atomic):
        return t
    if isinstance(t, ListOf):
        return ListOf(substitute(t.item, env))
    if isinstance(t, TupleOf):
        return TupleOf(tuple(substitute(i, env) for i in t.items))
    if isinstance(t, RecordOf):
        return RecordOf(tuple((k, substitute(v, env)) for k, v in t.fields))
    if isinstance(t, UnionOf):
        return UnionOf(tuple(substitute(o, env) for o in t.options))
    return Named(t.name, tuple(substitute(a, env) for a in t.args))


def free_vars(t: Type) -> set[str]:
    """The names of the type variables in ``t``."""
    if isinstance(t, Var):
        return {t.name}
    if isinstance(t, Atomic):
        return set()
    if isinstance(t, ListOf):
        return free_vars(t.item)
    children: tuple[Type, ...]
    if isinstance(t, TupleOf):
        children = t.items
    elif isinstance(t, RecordOf):
        children = tuple(v for _, v in t.fields)
    elif isinstance(t, UnionOf):
        children = t.options
    else:
        children = t.args
    out: set[str] = set()
    for c in children:
        out |= free_vars(c)
    return out


# Catalog types whose parameters may be left out: the bare name means these arguments.
DEFAULT_ARGS: dict[str, tuple[Type, ...]] = {"Rectangle": (Atomic("Double"),)}
