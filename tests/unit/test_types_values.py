"""Validation, wrappers, the codec and assignability."""

import math

import msgpack
import pytest

import pipelogic.types as T
from pipelogic.cv import BoundingBox, DetectedClass, Image, Point, Rectangle


def box(h):
    return {
        "class": {"id": 1, "name": "a"},
        "confidence": 0.5,
        "rectangle": {"x": 1.0, "y": 2.0, "width": 3.0, "height": h},
    }


def test_path_in_mismatch():
    with pytest.raises(T.TypeMismatch) as err:
        T.validate({"boxes": [box(1.0)] * 3 + [box("abc")]}, "{boxes: [BoundingBox]}")
    assert str(err.value) == "boxes[3].rectangle.height: expected Double, got str ('abc')"


@pytest.mark.parametrize(
    ("value", "type_", "message"),
    [
        (2**31, "Int32", "expected Int32, got int (2147483648) out of range"),
        (-1, "UInt32", "out of range 0..4294967295"),
        (True, "Int64", "expected Int64, got bool (True)"),
        (1.5, "Int64", "expected Int64, got float (1.5)"),
        (1e39, "Float", "out of the 32-bit float range"),
        ("ab", "Char", "of length != 1"),
        ("x", "Bytes", "expected Bytes, got str"),
        ([1], "(Int32, Int32)", "of length 1"),
        ({"x": 1.0}, "Point", "y: expected Double, got nothing (missing field)"),
        ({"x": 1.0, "y": 2.0, "z": 3.0}, "Point", "unexpected field(s) z"),
        ("abc", "Maybe<Int32>", "expected Maybe<Int32>, got str ('abc')"),
        ("PURPLE", "ImageFormat", "expected ImageFormat, got str ('PURPLE')"),
    ],
)
def test_mismatch_messages(value, type_, message):
    with pytest.raises(T.TypeMismatch) as err:
        T.validate(value, type_)
    assert message in str(err.value)


def test_python_mapping():
    assert T.validate(3, "Double") == 3.0 and isinstance(T.validate(3, "Double"), float)
    assert T.validate([1, 2], "(Int32, Int32)") == (1, 2)
    assert T.validate((1, 2), "[Int32]") == [1, 2]
    assert T.validate(bytearray(b"ab"), "Bytes") == b"ab"
    assert T.validate(memoryview(b"ab"), "Bytes") == b"ab"
    assert T.validate(None, "Maybe<String>") is None
    assert T.validate("s", "Maybe<String>") == "s"
    assert T.validate(0.1, "Float") == pytest.approx(0.1, rel=1e-7) and T.validate(0.1, "Float") != 0.1


def test_wrappers_behave_like_values():
    assert T.Int32(5) * 2 == 10
    assert float(T.Double(0.5)) == 0.5
    assert tuple(T.Tuple([1.0, 2.0], "(Double, Double)")) == (1.0, 2.0)
    assert T.String("en") == "en" and str(T.String("en")) == "en"
    assert bool(T.Bool(True)) and T.Bool(False) == False  # noqa: E712
    assert T.Int64(3) < T.Int64(4) and hash(T.Int32(7)) == hash(7)
    assert T.List([1, 2], "[Int32]") == [1, 2]
    assert T.Record({"a": 1}, "{a: Int32}").a == 1
    with pytest.raises(T.TypeMismatch):
        T.Int32(2**40)
    with pytest.raises(T.TypeMismatch):
        T.List(["x"], "[Int32]")


def test_wrappers_pin_their_type():
    with pytest.raises(T.TypeMismatch, match="expected Int64, got Int32 wrapper"):
        T.validate(T.Int32(5), "Int64")
    with pytest.raises(T.TypeMismatch, match="expected Double, got Float wrapper"):
        T.validate(T.Float(1.0), "Double")
    # In a union the wrapper picks its own option even when an earlier one would fit.
    data, _ = T.encode(T.Int32(5), "Int64 | Int32")
    assert data == [1, 5]
    assert T.encode(T.Variant("Just", 4), "Maybe<Int32>")[0] == [1, 4]


def test_codec_round_trip_and_tags():
    for value, type_ in [
        (None, "Maybe<Int32>"),
        (3, "Maybe<Int32>"),
        ("BGR", "ImageFormat"),
        ([(1, "a"), (2, "b")], "[(Int32, String)]"),
        ({"a": [1.5], "b": None}, "{a: [Double], b: Maybe<Bool>}"),
        (b"\x00\x01", "Bytes"),
        ({"k": [1, "x", None]}, "a"),
    ]:
        frame, bufs = T.encode_frame(value, type_)
        assert T.decode_frame(frame, type_, bufs) == T.validate(value, type_)


def test_large_bytes_go_out_of_band_zero_copy():
    payload = bytearray(T.OOB_THRESHOLD)
    frame, bufs = T.encode_frame({"width": 256, "height": 256, "format": "GRAY", "data": payload}, "Image")
    assert len(bufs) == 1 and bufs[0] is payload  # the very object: no copy
    assert len(frame) < 100
    out = T.decode_frame(frame, "Image", [memoryview(payload)])
    assert isinstance(out, Image) and len(out.data) == len(payload)
    with pytest.raises(T.DecodeError, match="buffer 0 of 0"):
        T.decode_frame(frame, "Image", [])


@pytest.mark.parametrize(
    "raw",
    [
        b"\xdd\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff",
        b"\xdb\xff\xff\xff\xff",
        b"\xc6\xff\xff\xff\xff",
        b"\x91" * 100000,
        b"\xa2\xff\xfe",
        b"\xc1",
        b"\x01\x02",
        b"\x81\x01\x02",
        b"\xd4\x07\x00",
        b"",
    ],
)
def test_decoder_bombs_raise_decode_error(raw):
    for type_ in ("Int64", "[Int32]", "Image", "a", "Maybe<String>"):
        with pytest.raises(T.DecodeError):
            T.decode_frame(raw, type_)


def test_decode_is_strict():
    with pytest.raises(T.DecodeError, match="expected Int32"):
        T.decode_frame(msgpack.packb(2**40), "Int32")
    with pytest.raises(T.DecodeError, match="tag 5 of 2 options"):
        T.decode_frame(msgpack.packb([5, 1]), "Maybe<Int32>")
    with pytest.raises(T.DecodeError, match="unexpected field"):
        T.decode_frame(msgpack.packb({"x": 1.0, "y": 1.0, "z": 1.0}), "Point")
    with pytest.raises(T.DecodeError, match="expected Double"):
        T.decode_frame(msgpack.packb({"x": 1, "y": 1.0}), "Point")


def test_float_special_values():
    assert math.isnan(T.decode_frame(T.encode_frame(float("nan"), "Float")[0], "Float"))
    assert T.validate(float("inf"), "Double") == float("inf")


def test_cv_wrappers():
    b = BoundingBox(DetectedClass(1, "cat"), 0.9, Rectangle(1, 2, 3, 4))
    assert b.rectangle.x == 1.0 and b.class_.name == "cat" and b["class"]["id"] == 1
    frame, bufs = T.encode_frame([b], "[BoundingBox]")
    back = T.decode_frame(frame, "[BoundingBox]", bufs)
    assert isinstance(back[0], BoundingBox) and back == [b]
    with pytest.raises(T.TypeMismatch, match="x: expected Double, got str"):
        Point("a", 1.0)
    with pytest.raises(T.TypeMismatch, match="expected Point"):
        T.validate(Rectangle(1, 2, 3, 4), "Point")


def test_image_numpy_zero_copy():
    np = pytest.importorskip("numpy")
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    img = Image.from_numpy(arr, format="RGB")
    assert (img.width, img.height, img.format) == (3, 2, "RGB")
    assert np.shares_memory(img.to_numpy(), arr)
    with pytest.raises(ValueError, match="does not fit format GRAY"):
        Image.from_numpy(arr, format="GRAY")


@pytest.mark.parametrize(
    ("producer", "consumer", "ok"),
    [
        ("Int32", "Int32", True),
        ("Int32", "Int64", False),
        ("[Int32]", "[a]", True),
        ("a", "[Int32]", True),
        ("(a, a)", "(Int32, String)", False),
        ("Int32", "Maybe<Int32>", True),
        ("Maybe<Int32>", "Int32", False),
        ("Maybe<Int32>", "Maybe<a>", True),
        ("Point", "{x: Double, y: Double}", False),
        ("{a: Int32, b: String}", "{b: String, a: Int32}", True),
        ("Int32 | String", "String | Int32", True),
        ("BoundingBox", "BoundingBox", True),
    ],
)
def test_assignability(producer, consumer, ok):
    assert T.is_assignable(T.create_type(producer), T.create_type(consumer)) is ok


def test_unify_binds_variables_and_says_where():
    pb, cb = T.unify(T.create_type("[Int32]"), T.create_type("[a]"))
    assert cb == {"a": T.Atomic("Int32")} and pb == {}
    with pytest.raises(T.IncompatibleTypes, match=r"cannot unify String with Int64 at \.y\[\]"):
        T.unify(T.create_type("{x: Int32, y: [String]}"), T.create_type("{x: Int32, y: [Int64]}"))
    with pytest.raises(T.IncompatibleTypes, match="infinite type"):
        T.unify(T.create_type("a"), T.create_type("[a]").__class__(T.Var("b"))) if False else T.unify(
            T.create_type("(a, [a])"), T.create_type("(b, b)")
        )


def test_a_lone_surrogate_is_a_type_mismatch_not_an_encoder_crash():
    """Found by the round-trip property in CI: '\\ud800' passed validation, then msgpack
    raised UnicodeEncodeError."""
    import pytest

    import pipelogic.types as T
    from pipelogic.errors import TypeMismatch

    for t in ("Char", "String", "[String]"):
        v = ["\ud800"] if t.startswith("[") else "\ud800"
        with pytest.raises(TypeMismatch, match="surrogate"):
            T.encode_frame(v, T.create_type(t))
    frame, bufs = T.encode_frame("é€", T.create_type("String"))
    assert T.decode_frame(frame, T.create_type("String"), bufs) == "é€"
