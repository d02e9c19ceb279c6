"""Parsing of type expressions, definitions and literals, with their error messages."""

import pytest

import pipelogic.types as T
from pipelogic.types import Atomic, ListOf, Named, RecordOf, TupleOf, UnionOf, Var
from pipelogic.types._parser import parse_type


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Int32", Atomic("Int32")),
        ("[Int32]", ListOf(Atomic("Int32"))),
        ("()", TupleOf(())),
        ("(Int32,)", TupleOf((Atomic("Int32"),))),
        ("(Int32, String)", TupleOf((Atomic("Int32"), Atomic("String")))),
        ("(Int32)", Atomic("Int32")),
        ("{x: Double, y: Double}", RecordOf((("x", Atomic("Double")), ("y", Atomic("Double"))))),
        ("{}", RecordOf(())),
        ("Int32 | String", UnionOf((Atomic("Int32"), Atomic("String")))),
        ("[Int32 | String]", ListOf(UnionOf((Atomic("Int32"), Atomic("String"))))),
        ("Maybe<Image>", Named("Maybe", (Named("Image"),))),
        ("a", Var("a")),
        ("[a]", ListOf(Var("a"))),
        ("(A | B)", UnionOf((Named("A"), Named("B")))),
    ],
)
def test_forms(text, expected):
    assert parse_type(text) == expected
    assert parse_type(str(expected)) == expected  # printing round-trips


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[Int32", "expected ']' at column 7 in \"[Int32\""),
        ("(Int32, ", "expected a type at column 9"),
        ("{x Int32}", "expected ':' at column 4"),
        ("{x: Int32, x: Double}", "duplicate field 'x' at column 12"),
        ("Int32 Int64", "expected end of type at column 7"),
        ("", "expected a type at column 1"),
        ("Int32 $", "unexpected character '$' at column 7"),
        ("Maybe<Int32", "expected '>' at column 12"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(T.TypeParseError) as err:
        parse_type(text)
    assert message in str(err.value)


def test_create_type_rejects_unknown_names_with_hint():
    with pytest.raises(T.TypeDefinitionError, match="unknown type 'BoundingBx'; did you mean BoundingBox"):
        T.create_type("[BoundingBx]")


def test_get_type_lists_near_matches():
    assert T.get_type("Image") == Named("Image")
    with pytest.raises(T.TypeDefinitionError, match="did you mean Image"):
        T.get_type("Imgae")


def test_arity_is_checked():
    with pytest.raises(T.TypeDefinitionError, match="Maybe takes 1 argument"):
        T.create_type("Maybe<Int32, Int32>")


def test_register_named_is_idempotent_and_ordered():
    T.register_named([("UtPair", "(Int32, Int32)"), ("UtPairs", "[UtPair]")])
    T.register_named([("UtPair", "(Int32, Int32)")])  # same again: fine
    assert T.validate([(1, 2)], "UtPairs") == [(1, 2)]
    with pytest.raises(T.TypeDefinitionError, match="already defined as UtPair := \\(Int32, Int32\\)"):
        T.register_named([("UtPair", "(Int32, Int64)")])


def test_generic_and_recursive_definitions():
    T.register_named([("UtBox<t>", "{item: t}"), ("UtTree", "{value: Int32, children: [UtTree]}")])
    assert T.validate({"item": 3}, "UtBox<Int32>") == {"item": 3}
    tree = {"value": 1, "children": [{"value": 2, "children": []}]}
    assert T.decode_frame(T.encode_frame(tree, "UtTree")[0], "UtTree") == tree
    with pytest.raises(T.TypeDefinitionError, match="type variable"):
        T.register_named([("UtBad", "{item: t}")])
    with pytest.raises(T.TypeDefinitionError, match="itself"):
        T.register_named([("UtLoop", "UtLoop | Int32")])


def test_cannot_redefine_atomic():
    with pytest.raises(T.TypeParseError, match="atomic"):
        T.register_named([("Int32", "Int64")])


@pytest.mark.parametrize(
    ("text", "type_", "value"),
    [
        ('"text"', "String", "text"),
        ("en", "String", "en"),
        ("(1.0, 2.0)", "(Double, Double)", (1.0, 2.0)),
        ("(0.5, 0.5, 1)", "(Double, Double, Double)", (0.5, 0.5, 1.0)),
        ("[1, 2]", "[Int32]", [1, 2]),
        ("{a: 1, b: true}", "{a: Int32, b: Bool}", {"a": 1, "b": True}),
        ("-3", "Int64", -3),
        ("1e3", "Double", 1000.0),
        ("BGR", "ImageFormat", "BGR"),
        ("Nothing", "Maybe<Int32>", None),
        ("7", "Maybe<Int32>", 7),
    ],
)
def test_literals(text, type_, value):
    assert T.parse_literal(text, type_) == value


def test_literal_errors():
    with pytest.raises(T.TypeMismatch, match="expected Int32, got str"):
        T.parse_literal('"x"', "Int32")
    with pytest.raises(T.TypeParseError, match="expected ']' at column 3"):
        T.parse_literal("[1", "[Int32]")
    with pytest.raises(T.TypeMismatch, match=r"\[1\]: expected Double, got str"):
        T.parse_literal('(1.0, "a")', "(Double, Double)")
