"""Hypothesis strategies for platform types and their values (shared by the codec's property tests)."""

from hypothesis import strategies as st

import pipelogic.types as T
from pipelogic.types import Atomic, ListOf, RecordOf, TupleOf, UnionOf

__all__ = ["ATOMS", "types", "values"]

ATOMS = {
    "Bool": st.booleans(),
    "Int32": st.integers(-(2**31), 2**31 - 1),
    "Int64": st.integers(-(2**63), 2**63 - 1),
    "UInt32": st.integers(0, 2**32 - 1),
    "UInt64": st.integers(0, 2**64 - 1),
    "Float": st.floats(width=32, allow_nan=False),
    "Double": st.floats(allow_nan=False),
    # Strings a UTF-8 wire can carry: a lone surrogate is refused (test_types_values).
    "Char": st.characters(codec="utf-8"),
    "String": st.text(st.characters(codec="utf-8"), max_size=20),
    "Bytes": st.binary(max_size=40),
}
_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)

types = st.recursive(
    st.sampled_from(sorted(ATOMS)).map(Atomic),
    lambda inner: st.one_of(
        inner.map(ListOf),
        st.lists(inner, max_size=3).map(lambda xs: TupleOf(tuple(xs))),
        st.dictionaries(_NAME, inner, max_size=3).map(lambda d: RecordOf(tuple(d.items()))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: UnionOf(tuple(xs))),
    ),
    max_leaves=8,
)


def values(t):
    if isinstance(t, Atomic):
        return ATOMS[t.name]
    if isinstance(t, ListOf):
        return st.lists(values(t.item), max_size=4)
    if isinstance(t, TupleOf):
        return st.tuples(*[values(i) for i in t.items])
    if isinstance(t, RecordOf):
        return st.fixed_dictionaries({k: values(v) for k, v in t.fields})
    return st.one_of(*[st.tuples(st.just(i), values(o)) for i, o in enumerate(t.options)]).map(
        lambda iv: T.Variant(iv[0], iv[1])
    )
