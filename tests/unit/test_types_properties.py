"""Property-based tests: random types and values round-trip; random bytes never crash."""

import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipelogic.types as T
from tests.strategies import types, values


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
