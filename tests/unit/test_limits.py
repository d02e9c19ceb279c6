"""Hostile definition files and config values (issue 29, items 4-6): each gets one clear
error naming the limit, in bounded time and memory; nothing accepted is too large to deliver
in a Welcome; a bug hit by one peer in a loop logs one traceback per interval."""

from __future__ import annotations

import logging

import pytest

from backend_stub.refusals import Refusals
from backend_stub.scheduler import Scheduler
from pipelogic import protocol as P
from pipelogic import types as T
from pipelogic._yamlfile import load_yaml
from pipelogic.component import ConfigParam, check_config_value
from pipelogic.errors import DefinitionError, PipelogicError, TypeParseError
from pipelogic.limits import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_VALUE_BYTES,
    MAX_DEFINITION_BYTES,
    MAX_NESTING,
    MAX_YAML_NODES,
    preview,
)
from pipelogic.pipeline import load_pipeline, parse_pipeline
from pipelogic.types._parser import parse_literal_text, parse_type

BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi")
)


def test_an_alias_bomb_is_refused_without_being_expanded(tmp_path):
    f = tmp_path / "pipeline.yml"
    f.write_text(BOMB)
    with pytest.raises(DefinitionError) as err:
        load_yaml(f)
    assert f"more than {MAX_YAML_NODES:,} values" in str(err.value) and "an alias counts as all it repeats" in str(
        err.value
    )
    assert str(err.value).startswith(f"{f}:6:")  # where the count went over


def test_an_alias_bomb_as_a_config_value_or_values_source_fails_validate(tmp_path, component):
    cdir = component(
        "k",
        "name: k\nworker: {input_type: Int64, output_type: Int64, config_schema: {s: {type: String, default: x}}}\n",
        "",
    )
    bomb = BOMB.replace("\n", "\n  ").rstrip()
    for spec in (f"k: {{path: {cdir}, config: {{s: *i}}}}", "n2: {source: values, values: *i}"):
        f = tmp_path / "pipeline.yml"
        f.write_text(
            f"name: t\nbombs:\n  {bomb}\ncomponents:\n  n: {{source: sequence, count: 1}}\n  {spec}\nconnections: []\n"
        )
        with pytest.raises(DefinitionError, match="more than 200,000 values"):
            load_pipeline(f)


def test_yaml_nested_10000_deep_is_refused_with_the_limit(tmp_path):
    f = tmp_path / "pipeline.yml"
    f.write_text("a: " + "[" * 10_000 + "]" * 10_000 + "\n")
    with pytest.raises(DefinitionError, match=f"nest more than {MAX_NESTING} deep"):
        load_yaml(f)
    block = "".join(" " * i + f"k{i}:\n" for i in range(1_000)) + " " * 1_000 + "x: 1\n"
    f.write_text(block)
    with pytest.raises(DefinitionError, match=f"nest more than {MAX_NESTING} deep"):
        load_yaml(f)


def test_libyaml_refusing_the_depth_first_gets_the_same_refusal(tmp_path, monkeypatch):
    """libyaml 0.2.5 and later (PyYAML 6.0.4's wheels) stop at 1,000 levels while scanning
    ahead, before the prescan has seen 64: that is the nesting refusal too, not a syntax
    error handed on to the pure-Python loader (which would recurse past Python's limit)."""
    import yaml

    def parse(text, Loader):
        yield yaml.StreamStartEvent()
        mark = yaml.Mark("pipeline.yml", 0, 0, 1003, None, None)
        raise yaml.scanner.ScannerError("while increasing flow level", mark, "exceeded maximum nesting depth", mark)

    monkeypatch.setattr(yaml, "parse", parse)
    f = tmp_path / "pipeline.yml"
    f.write_text("a: " + "[" * 10_000 + "]" * 10_000 + "\n")
    with pytest.raises(
        DefinitionError, match=rf"pipeline.yml:1:1004: lists and mappings nest more than {MAX_NESTING} deep"
    ):
        load_yaml(f)


def test_nesting_up_to_the_limit_loads(tmp_path):
    f = tmp_path / "pipeline.yml"
    f.write_text("a: " + "[" * (MAX_NESTING - 1) + "1" + "]" * (MAX_NESTING - 1) + "\n")
    value = load_yaml(f)["a"]
    for _ in range(MAX_NESTING - 2):
        value = value[0]
    assert value == [1]


def test_a_definition_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    f = tmp_path / "pipeline.yml"
    with f.open("w") as out:
        out.write("values: [")
        out.write("1," * (MAX_DEFINITION_BYTES // 2))
        out.write("1]\n")
    with pytest.raises(DefinitionError, match=r"over the 4 MiB limit for a definition file; put large data in a jsonl"):
        load_yaml(f)


def test_a_type_expression_or_literal_nested_10000_deep_is_a_parse_error():
    with pytest.raises(TypeParseError, match=f"nested more than {MAX_NESTING} deep"):
        parse_type("[" * 10_000 + "Int32" + "]" * 10_000)
    with pytest.raises(TypeParseError, match=f"nested more than {MAX_NESTING} deep") as err:
        parse_literal_text("[" * 3_000 + "]" * 3_000)
    assert len(str(err.value)) < 300  # the text is quoted by its start, not all of it
    assert parse_type("[" * 10 + "Int32" + "]" * 10) is not None


def test_a_config_value_over_the_limit_is_refused_with_the_limit():
    s = ConfigParam("s", "String", T.create_type("String"))
    with pytest.raises(PipelogicError, match=r"5 MiB of text is over the 256 KiB limit for one config value") as err:
        check_config_value(s, "x" * (5 << 20))
    assert "file slot" in str(err.value)
    big_list = ConfigParam("l", "[Int64]", T.create_type("[Int64]"))
    with pytest.raises(PipelogicError, match="over the 256 KiB limit for one config value"):
        check_config_value(big_list, list(range(1 << 40, (1 << 40) + 60_000)))
    text = "[" + ",".join(["1"] * (MAX_CONFIG_VALUE_BYTES // 2 + 10)) + "]"
    with pytest.raises(PipelogicError, match="limit for one config value"):
        check_config_value(big_list, text)
    assert check_config_value(s, "y" * 1000) == "y" * 1000


def _k(component) -> str:
    params = ", ".join(f"s{i}: {{type: String, default: x}}" for i in range(8))
    return str(
        component("k", f"name: k\nworker: {{input_type: Int64, output_type: Int64, config_schema: {{{params}}}}}\n", "")
    )


def test_config_values_that_together_exceed_a_welcome_are_refused_at_validate(tmp_path, component):
    cdir = _k(component)
    big = "z" * (MAX_CONFIG_VALUE_BYTES - 100)
    n = MAX_CONFIG_BYTES // len(big) + 1
    spec = {
        "name": "t",
        "components": {
            "a": {"source": "sequence", "count": 1},
            "k": {"path": cdir, "config": {f"s{i}": big for i in range(n)}},
            "o": {"sink": "null"},
        },
        "connections": ["a -> k", "k -> o"],
    }
    with pytest.raises(
        DefinitionError, match=r"k\.config: its config values take .* over the 1 MiB limit for one vertex"
    ):
        parse_pipeline(spec, tmp_path / "p.yml")


def test_config_set_refuses_what_would_not_fit_and_keeps_the_old_values(tmp_path, component):
    cdir = _k(component)
    p = parse_pipeline(
        {
            "name": "t",
            "components": {"a": {"source": "sequence", "count": 1}, "k": {"path": cdir}, "o": {"sink": "null"}},
            "connections": ["a -> k", "k -> o"],
        },
        tmp_path / "p.yml",
    )
    s = Scheduler(p)
    big = "z" * (MAX_CONFIG_VALUE_BYTES - 100)
    for i in range(MAX_CONFIG_BYTES // len(big)):
        [reply] = s.config_set(P.ConfigSet("k", {f"s{i}": big}), b"c", 0.0)
        assert P.decode(reply.frames)[0].ok
    version = s.vertices["k"].config_version
    [reply] = s.config_set(P.ConfigSet("k", {"s7": big}), b"c", 0.0)
    msg, _ = P.decode(reply.frames)
    assert not msg.ok and "over the 1 MiB limit for one vertex" in msg.error
    assert s.vertices["k"].config_version == version and s.vertices["k"].v.config["s7"] == "x"
    [reply] = s.config_set(P.ConfigSet("k", {"s0": "x" * (1 << 20)}), b"c", 0.0)
    msg, _ = P.decode(reply.frames)
    assert not msg.ok and "limit for one config value" in msg.error and len(msg.error) < 1000


def test_preview_is_bounded_whatever_the_value():
    deep: list = []
    for _ in range(3000):
        deep = [deep]
    shared = ["lol"] * 9
    for _ in range(9):
        shared = [shared] * 9  # 9**10 leaves if expanded
    for value in (deep, shared, "x" * (5 << 20), {"a": list(range(10**6))}):
        assert len(preview(value)) < 120


def test_an_internal_error_logs_one_traceback_per_peer_per_interval(caplog):
    refusals = Refusals(logging.getLogger("test.refusals"), interval_s=10.0)
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        for i in range(1000):
            try:
                raise RecursionError("maximum recursion depth exceeded")
            except RecursionError:
                refusals.refuse("control", "control: internal error while handling config_set", i * 0.001, bug=True)
        try:
            raise RecursionError("again")
        except RecursionError:
            refusals.refuse("control", "control: internal error while handling config_set", 11.0, bug=True)
    assert len(caplog.records) == 2
    assert all(r.exc_info is not None and r.levelno == logging.ERROR for r in caplog.records)
    assert "(999 more from control since the last report)" in caplog.records[1].getMessage()
    assert refusals.counts["control"] == 1001
