"""Property-based tests: random types and values round-trip; random bytes never crash."""

import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipelogic.types as T
from pipelogic.types import Atomic, ListOf, RecordOf, TupleOf, UnionOf

_ATOMS = {
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
    st.sampled_from(sorted(_ATOMS)).map(Atomic),
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
        return _ATOMS[t.name]
    if isinstance(t, ListOf):
        return st.lists(values(t.item), max_size=4)
    if isinstance(t, TupleOf):
        return st.tuples(*[values(i) for i in t.items])
    if isinstance(t, RecordOf):
        return st.fixed_dictionaries({k: values(v) for k, v in t.fields})
    return st.one_of(*[st.tuples(st.just(i), values(o)) for i, o in enumerate(t.options)]).map(
        lambda iv: T.Variant(iv[0], iv[1])
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_round_trip(data):
    t = data.draw(types)
    assert T.create_type(str(t)) == t  # printing and parsing agree
    v = data.draw(values(t))
    normal = T.validate(v, t)
    frame, bufs = T.encode_frame(v, t)
    assert T.decode_frame(frame, t, bufs) == normal


@settings(max_examples=500)
@given(st.binary(max_size=4096), st.sampled_from(["Image", "[BoundingBox]", "Maybe<a>", "(Int32, String)"]))
def test_decoder_totality(raw, type_):
    tracemalloc.start()
    try:
        T.decode_frame(raw, type_)
    except T.DecodeError:
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= 4 * len(raw) + 256 * 1024


@settings(max_examples=300)
@given(st.data())
def test_decoder_mutations(data):
    t = data.draw(types)
    frame, _ = T.encode_frame(data.draw(values(t)), t)
    raw = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = data.draw(st.integers(0, len(raw)))
        if op == "flip" and pos < len(raw):
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            raw.insert(pos, data.draw(st.integers(0, 255)))
        elif raw and pos < len(raw):
            del raw[pos]
    try:
        T.decode_frame(bytes(raw), t)
    except T.DecodeError:
        pass
