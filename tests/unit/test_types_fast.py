"""The generated fast paths (``pipelogic.types._fast``) never change what the codecs do:
on random types, random valid values, values of the wrong shape and mutated wire data, the
fast ``enc``/``dec`` give exactly what the generic methods give (the same bytes, the same
values of the same Python types, the same error with the same path)."""

from __future__ import annotations

from contextlib import contextmanager

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipelogic.cv  # noqa: F401 - named records decode as cv classes, as in a worker
import pipelogic.types as T
from pipelogic.errors import TypeMismatch
from pipelogic.types._codec import codec_for
from pipelogic.types._registry import resolve
from tests.strategies import ATOMS, types, values

NAMED = [
    "BoundingBox",
    "[BoundingBox]",
    "Ellipse",
    "Polygon",
    "(Point, [Landmark])",
    "{a: Rectangle, b: [Int32]}",
    "[(Int32, String)]",
    "{id: Int64, label: String, score: Double, box: (Double, Double, Double, Double)}",
]

# Plain data of any shape: what a user might return, or what a peer might send.
# The edges each check is about: integer ranges, 32-bit floats, non-ASCII and unencodable text.
edges = st.sampled_from(
    [
        -1,
        2**31 - 1,
        2**31,
        -(2**31) - 1,
        2**32,
        2**63 - 1,
        2**63,
        -(2**63) - 1,
        2**64 - 1,
        3.5e38,
        -3.5e38,
        float("inf"),
        float("nan"),
        "é",
        "\ud800",
        "ab",
        "",
        True,
        1.0,
        1,
    ]
)
junk = st.recursive(
    edges
    | st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.sampled_from(["x", "y", "id", "name", "class", "points", "a", "b"]) | st.text(max_size=3),
            inner,
            max_size=4,
        )
    ),
    max_leaves=10,
)


def any_values(t):
    """Values of ``t``, named types and all (built-in ones from the catalog)."""
    if isinstance(t, T.Named):
        return any_values(resolve(t))
    if isinstance(t, T.Atomic):
        return ATOMS[t.name]
    if isinstance(t, T.ListOf):
        return st.lists(any_values(t.item), max_size=3)
    if isinstance(t, T.TupleOf):
        return st.tuples(*[any_values(i) for i in t.items])
    if isinstance(t, T.RecordOf):
        return st.fixed_dictionaries({k: any_values(v) for k, v in t.fields})
    raise AssertionError(f"no values for {t}")


def leaves(v, path=()):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from leaves(x, (*path, k))
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            yield from leaves(x, (*path, i))
    yield path


def replaced(v, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(v, dict):
        return {**v, head: replaced(v[head], rest, new)}
    items = list(v)
    items[head] = replaced(items[head], rest, new)
    return type(v)(items) if isinstance(v, tuple) else items


def mutated(data, v):
    """``v`` with one part (a leaf or a whole branch) replaced by junk: a near miss."""
    paths = list(leaves(v))
    path = data.draw(st.sampled_from(paths))
    return replaced(v, path, data.draw(edges | junk))


@contextmanager
def generic_only():
    """Every codec without its fast paths, all the way down (a generic record's fields
    would otherwise use their own fast paths)."""
    from pipelogic.types import _codec

    saved = []
    for c in list(_codec._CACHE.values()):
        for name in ("enc", "dec"):
            if name in vars(c):
                saved.append((c, name, vars(c).pop(name)))
    try:
        yield
    finally:
        for c, name, fn in saved:
            setattr(c, name, fn)


def outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except TypeMismatch as err:
        return "error", str(err)


def same_encoding(c, v):
    fast = outcome(c.enc, v, [])
    with generic_only():
        generic = outcome(c.enc, v, [])
    if fast[0] == "ok" and generic[0] == "ok":
        assert msgpack.packb(fast[1], use_bin_type=True) == msgpack.packb(generic[1], use_bin_type=True)
    else:
        assert fast == generic


def shape(x):
    """A value with the Python type of every part (a tuple is not a list, a Record not a dict)."""
    if isinstance(x, dict):
        return (type(x).__name__, {k: shape(v) for k, v in x.items()})
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [shape(v) for v in x])
    return (type(x).__name__, x)


def same_decoding(c, o):
    fast = outcome(c.dec, o, [])
    with generic_only():
        generic = outcome(c.dec, o, [])
    assert fast[0] == generic[0], (fast, generic)
    if fast[0] == "ok":
        assert shape(fast[1]) == shape(generic[1])
    else:
        assert fast == generic


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_paths_match_the_generic_codec_on_random_types(data):
    t = data.draw(types)
    c = codec_for(t)
    v = data.draw(values(t))
    same_encoding(c, v)
    for _ in range(4):
        same_encoding(c, mutated(data, v))
    same_encoding(c, data.draw(junk))
    if type(c).__name__ in ("_List", "_Tuple", "_Record"):
        frame, bufs = T.encode_frame(v, t)
        if not bufs:
            o = msgpack.unpackb(frame, raw=False)
            same_decoding(c, o)
            for _ in range(4):
                same_decoding(c, mutated(data, o))
        same_decoding(c, data.draw(junk))


@pytest.mark.parametrize("text", NAMED)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fast_paths_match_on_named_and_nested_records(text, data):
    t = T.create_type(text)
    c = codec_for(t)
    v = data.draw(any_values(t))
    same_encoding(c, v)
    for _ in range(4):
        same_encoding(c, mutated(data, v))
    same_encoding(c, data.draw(junk))
    o = msgpack.unpackb(T.encode_frame(v, t)[0], raw=False)
    same_decoding(c, o)
    for _ in range(4):
        same_decoding(c, mutated(data, o))
    same_decoding(c, data.draw(junk))


def test_the_fast_path_is_taken_and_errors_keep_their_path():
    t = T.create_type("{a: Rectangle, b: [Int32]}")
    c = codec_for(t)
    good = {"a": {"x": 1.0, "y": 2.0, "width": 3.0, "height": 4.0}, "b": [1, 2]}
    assert c.enc(good, []) is good  # checked, handed to msgpack as it is
    back = c.dec(msgpack.unpackb(msgpack.packb(good)), [])
    assert c.enc.__name__ == "enc" and c.dec.__name__ == "dec"  # generated on first use, not the generic methods
    assert type(back["a"]).__name__ in ("Rectangle", "Record") and back == good
    assert c.enc(back, []) is back  # a decoded value passed on takes the fast path too
    # Keys in another order: the generic way, whose wire form has the record's order.
    reordered = {"b": [1, 2], "a": {"height": 4.0, "width": 3.0, "y": 2.0, "x": 1.0}}
    assert msgpack.packb(c.enc(reordered, [])) == msgpack.packb(good)
    with pytest.raises(TypeMismatch, match=r"^b\[1\]: expected Int32, got str \('x'\)$"):
        c.enc({**good, "b": [1, "x"]}, [])
    with pytest.raises(TypeMismatch, match=r"^a\.width: expected Double"):
        c.dec({"a": {"x": 1.0, "y": 2.0, "width": "w", "height": 4.0}, "b": []}, [])
