"""Porting from the platform: unions, the variant form, definitions through
create_type, config values that behave like Python values, and type gaps."""

import json

import msgpack
import pytest

import pipelogic.types as T
from backend_stub.scheduler import Scheduler
from pipelogic import protocol as P
from pipelogic.component import ConfigParam, check_config_value
from pipelogic.errors import DefinitionError, TypeMismatch
from pipelogic.pipeline import parse_pipeline
from pipelogic.worker._config import Config


def roundtrip(value, t):
    frame, bufs = T.encode_frame(value, t)
    return T.decode_frame(frame, t, bufs)


@pytest.mark.parametrize(
    "producer, consumer, ok",
    [
        ("Int64", "Int64 | String", True),  # an A feeds an A | B
        ("String", "Int64 | String", True),
        ("Int64 | String", "String | Int64", True),  # order does not decide
        ("Int64 | String", "Double | String | Int64", True),
        ("RGB", "ImageFormat", True),  # an option of a named union
        ("[Int64]", "[Int64 | String]", True),
        ("{a: Int64}", "{a: Int64 | Bool}", True),
        ("Int64 | String", "Int64", False),  # a String is no Int64
        ("Int64", "String | Double", False),
        ("Bool | Int64", "Int64 | String", False),
    ],
)
def test_union_assignability_is_by_option_not_by_position(producer, consumer, ok):
    assert T.is_assignable(T.create_type(producer), T.create_type(consumer)) is ok


def test_a_pipeline_wires_a_producer_into_a_wider_union(tmp_path, component):
    cdir = component("u", "name: u\nworker: {input_type: 'String | Int64', output_type: Int64}\n", "")
    data = {
        "name": "t",
        "components": {"n": {"source": "sequence", "count": 1}, "u": {"path": str(cdir)}, "o": {"sink": "null"}},
        "connections": ["n -> u", "u -> o"],
    }
    p = parse_pipeline(data, tmp_path / "p.yml")
    assert str(p.vertices["u"].wire_types[0]) == "Int64"  # the consumer decodes with the producer's type
    data["components"]["n"] = {"source": "values", "type": "Bool", "values": [True]}
    with pytest.raises(DefinitionError, match="no option of the union accepts it"):
        parse_pipeline(data, tmp_path / "p.yml")


def test_decoding_a_union_keeps_the_alternative_the_value_came_from():
    got = roundtrip(1, "Float | Int32")
    assert got == 1 and type(got) is int
    assert roundtrip(1.5, "Float | Int32") == 1.5
    assert type(roundtrip(2.0, "Int64 | Double")) is float
    assert roundtrip(True, "Int64 | Bool") is True


def test_the_platforms_variant_form_is_our_unit_types():
    assert T.create_type("Image.RGB | Image.BGR | Image.GRAY") == T.create_type("RGB | BGR | GRAY")
    assert roundtrip("BGR", "Image.RGB | Image.BGR") == "BGR"
    with pytest.raises(T.TypeParseError, match="expected Enum.Variant"):
        T.create_type("Image.rgb")


def test_create_type_with_a_definition_registers_it():
    t = T.create_type("FidelityPoint := {x: Double, y: Double}")
    assert str(t) == "FidelityPoint" and T.create_type("FidelityPoint") == t
    assert T.create_type("FidelityPoint := {x: Double, y: Double}") == t  # idempotent
    assert str(T.create_type("FidelityPair<a> := (a, a)")) == "FidelityPair<a>"
    assert T.validate((1, 2), "FidelityPair<Int64>") == (1, 2)
    with pytest.raises(T.TypeDefinitionError, match="already defined"):
        T.create_type("FidelityPoint := {x: Int64}")


def test_maybe_of_unit_and_just_nothing_survive_round_trips():
    assert roundtrip((), "Maybe<()>") == () and roundtrip(None, "Maybe<()>") is None
    assert T.validate((), "Maybe<()>") == ()
    nested = "Maybe<Maybe<Int64>>"
    just_nothing = T.Variant("Just", None)
    got = roundtrip(just_nothing, nested)
    assert isinstance(got, T.Variant) and got.tag == "Just" and got.value is None
    assert roundtrip(got, nested) == got  # and again
    assert T.encode_frame(got, nested)[0] != T.encode_frame(None, nested)[0]
    assert roundtrip(None, nested) is None and roundtrip(5, nested) == 5


def test_config_values_print_and_dump_like_the_values_they_wrap():
    assert str(T.Int64(3)) == "3" and f"{T.Int64(3)}" == "3" and f"{T.Int32(7):>3}" == "  7"
    assert str(T.Double(0.5)) == "0.5" and f"{T.Double(0.25):.1f}" == "0.2"
    assert repr(T.Int64(3)) == "Int64(3)"  # repr still says what it is
    schema = {
        "flag": ConfigParam("flag", "Bool", T.create_type("Bool")),
        "n": ConfigParam("n", "Int64", T.create_type("Int64")),
    }
    cfg = Config()
    cfg._bind(schema, {"flag": True, "n": 3}, 1)
    assert cfg.flag is True and json.dumps(cfg.flag) == "true" and json.dumps(cfg.n) == "3"
    assert f"n={cfg.n}" == "n=3"
    # A config value given back as an output of its own type (or a union or Maybe of it).
    for t in ("Int64", "Int64 | String", "Maybe<Int64>"):
        assert roundtrip(cfg.n, t) == 3


def test_strings_in_config_read_the_same_everywhere():
    s = ConfigParam("s", "String", T.create_type("String"))
    assert check_config_value(s, "123") == "123"
    assert check_config_value(s, '"quoted"') == "quoted"
    assert check_config_value(s, '"a \\"b\\""') == 'a "b"'
    assert check_config_value(s, "plain text") == "plain text"
    with pytest.raises(TypeMismatch):
        check_config_value(s, 123)


def test_an_immutable_parameter_is_refused_by_config_set(tmp_path, component):
    cdir = component(
        "k",
        """
        name: k
        worker:
          input_type: Int64
          output_type: Int64
          config_schema:
            model: {type: String, default: a, mutable: false}
            name: {type: String, default: x}
    """,
        "",
    )
    p = parse_pipeline(
        {
            "name": "t",
            "components": {"a": {"source": "sequence", "count": 1}, "k": {"path": str(cdir)}, "o": {"sink": "null"}},
            "connections": ["a -> k", "k -> o"],
        },
        tmp_path / "p.yml",
    )
    s = Scheduler(p)
    [reply] = s.config_set(P.ConfigSet("k", {"model": "b"}), b"c", 0.0)
    msg, _ = P.decode(reply.frames)
    assert not msg.ok and "model is not mutable (mutable: false in config_schema)" in msg.error
    [reply] = s.config_set(P.ConfigSet("k", {"name": "123"}), b"c", 0.0)
    assert P.decode(reply.frames)[0].ok and s.vertices["k"].v.config["name"] == "123"


def test_yaml_booleans_as_names_are_refused_with_the_reason(tmp_path, component):
    cdir = component(
        "k",
        "name: k\nworker: {input_type: Int64, output_type: Int64, config_schema: {on: {type: Int64, default: 1}}}\n",
        "",
    )
    with pytest.raises(
        DefinitionError,
        match=r"config_schema\.True: a name must be a string, got bool True "
        r"\(YAML reads yes, no, on, off",
    ):
        from pipelogic.component import load_component

        load_component(cdir)


def test_bytes_like_values_are_accepted_everywhere():
    for v in (b"ab", bytearray(b"ab"), memoryview(b"ab")):
        assert roundtrip(v, "Bytes") == b"ab"
        assert roundtrip({"d": v}, "{d: Bytes}")["d"] == b"ab"
    frame, bufs = T.encode_frame(b"xy", "Bytes")
    assert T.decode_frame(bytearray(frame), "Bytes", [bytearray(b) for b in bufs]) == b"xy"
    assert T.decode_frame(memoryview(frame), "Bytes", bufs) == b"xy"


def test_an_image_whose_data_does_not_match_its_size_is_refused_everywhere():
    import pipelogic.cv  # noqa: F401 - catalog classes

    good = {"width": 2, "height": 2, "format": "RGB", "data": b"x" * 12}
    assert T.validate(good, "Image").width == 2
    bad = dict(good, data=b"x" * 11)
    with pytest.raises(TypeMismatch, match=r"expected Image, got data of 11 bytes for 2 x 2 pixels of 3 byte"):
        T.validate(bad, "Image")
    with pytest.raises(TypeMismatch, match=r"^img: expected Image"):
        T.encode({"img": bad}, "{img: Image}")
    frame = msgpack.packb({"width": 1, "height": 1, "format": [], "data": b"ab"}, use_bin_type=True)
    with pytest.raises(T.DecodeError):
        T.decode_frame(frame, "Image")
    assert T.validate({"width": 3, "height": 1, "scale": 0.001, "data": b"x" * 6}, "DepthImage")


def test_the_values_source_reads_bytes_as_base64_like_a_jsonl_file(tmp_path):
    data = {
        "name": "t",
        "components": {"n": {"source": "values", "type": "[Bytes]", "values": [["aGk="], []]}, "o": {"sink": "memory"}},
        "connections": ["n -> o"],
    }
    p = parse_pipeline(data, tmp_path / "p.yml")
    from backend_stub.builtins import make_source

    src = make_source(p, p.vertices["n"])
    frames = src.take(5)
    assert [T.decode_frame(f[0], "[Bytes]") for f in frames] == [[b"hi"], []]
    data["components"]["n"]["values"] = [["not base64!"]]
    with pytest.raises(DefinitionError, match=r"components\.n\.values\[0\]: expected Bytes \(base64 text\)"):
        parse_pipeline(data, tmp_path / "p.yml")


def test_flush_at_end_delivers_the_tail_only_once_the_inputs_ended():
    from pipelogic.pulling import decide, finished
    from pipelogic.types import InputsPullOption, InputsPullRequest, StreamPullShift

    pairs = InputsPullOption([StreamPullShift.from_fixed(0, 2, 2)])
    plain, flush = InputsPullRequest(pairs), InputsPullRequest(pairs, flush_at_end=True)
    assert decide([1], flush, [False]) is None  # live data: windowing as without it
    assert decide([1], plain, [True]) is None and finished([1], [True], plain)
    d = decide([1], flush, [True])
    assert d is not None and d.takes == ((0, 1),) and not finished([1], [True], flush)
    assert finished([0], [True], flush)
    skipping = InputsPullRequest(InputsPullOption([StreamPullShift.from_fixed(2, 3, 3)]), flush_at_end=True)
    assert decide([4], skipping, [True]).takes == ((2, 2),)
    assert InputsPullRequest.from_wire(flush.to_wire()) == flush and flush.to_wire()[-1] == "flush_at_end"
    assert (
        InputsPullRequest.from_wire(plain.to_wire()) == plain
        and not InputsPullRequest.from_wire(plain.to_wire()).flush_at_end
    )


def test_a_mutable_file_slot_is_rebound_by_config_set_and_a_fixed_one_refused(tmp_path, component):
    """Issue 24, item 4: `mutable` on a slot lets its binding change while the pipeline runs."""
    cdir = component(
        "det",
        """
        name: det
        worker:
          input_type: Int64
          output_type: Int64
          file_schema:
            model: {file_type: weights, config_key: model_path, mutable: true}
            labels: {file_type: text, config_key: labels_path}
    """,
        "",
    )
    for name in ("a.onnx", "b.pt", "labels.txt", "other.txt"):
        (tmp_path / name).write_text("x")
    p = parse_pipeline(
        {
            "name": "t",
            "components": {
                "a": {"source": "sequence", "count": 1},
                "k": {"path": str(cdir), "files": {"model": "./a.onnx", "labels": "./labels.txt"}},
                "o": {"sink": "null"},
            },
            "connections": ["a -> k", "k -> o"],
        },
        tmp_path / "p.yml",
    )
    s = Scheduler(p)

    def reply(values):
        [r] = s.config_set(P.ConfigSet("k", values), b"c", 0.0)
        return P.decode(r.frames)[0]

    assert reply({"model_path": "./b.pt"}).ok and s.vertices["k"].v.config["model_path"] == str(tmp_path / "b.pt")
    assert (
        "labels_path is the path of file slot 'labels', which is not mutable"
        in reply({"labels_path": "./other.txt"}).error
    )
    assert (
        "other.txt is a file of type text | txt (by its extension); slot 'model' takes weights"
        in reply({"model_path": "./other.txt"}).error
    )
    assert "nope.onnx: no such file" in reply({"model_path": "nope.onnx"}).error
