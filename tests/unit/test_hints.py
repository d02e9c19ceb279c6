"""Causes, not wrappers (issue 25, item 5): the common slips in a definition file and a
`config set` get a hint that names what was meant."""

from __future__ import annotations

import pytest

from backend_stub.scheduler import Scheduler
from pipelogic import protocol as P
from pipelogic._yamlfile import load_yaml
from pipelogic.errors import DefinitionError
from pipelogic.pipeline import load_pipeline, parse_pipeline


@pytest.mark.parametrize(
    "text, where, hint",
    [
        ("name: t\ncomponents:\n\tn: {source: sequence}\n", ":3:1:", "YAML indents with spaces, never tabs"),
        ('name: "t\ncomponents: {}\n', ":3:1:", "the quote opened on line 1 is not closed"),
        (
            "name: t\ncomponents:\n  n: {source: sequence\n  o: {sink: null}\n",
            ":4:4:",
            "is a '}' missing at the end of line 3, or a ',' between two entries?",
        ),
        ("name: t\nconnections: [a -> b\n", ":3:1:", "is a ']' missing at the end of line 2"),
        ("name: t\ncomponents:\n  n: a: b\n", ":3:7:", "a key needs a space after its ':'"),
    ],
)
def test_a_yaml_slip_keeps_its_position_and_gets_a_hint(tmp_path, text, where, hint):
    f = tmp_path / "p.yml"
    f.write_text(text)
    with pytest.raises(DefinitionError) as err:
        load_yaml(f)
    assert str(err.value).startswith(f"{f}{where} not valid YAML: ") and hint in str(err.value), str(err.value)


def test_a_misspelt_source_or_sink_key_says_what_was_meant_and_nothing_else(tmp_path):
    f = tmp_path / "p.yml"
    f.write_text(
        "name: t\ncomponents:\n  n: {sorce: sequence, count: 3}\n  o: {snk: jsonl, path: x.jsonl}\n"
        "connections: [n -> o]\n"
    )
    with pytest.raises(DefinitionError) as err:
        load_pipeline(f)
    problems = err.value.problems
    assert any("components.n.sorce: unknown key 'sorce'; did you mean 'source'?" in p for p in problems), problems
    assert any("components.o.snk: unknown key 'snk'; did you mean 'sink'?" in p for p in problems), problems
    assert not any("no such component directory" in p for p in problems), problems  # `path:` read as a folder


def test_a_vertex_name_with_a_colon_says_a_space_is_missing(tmp_path):
    f = tmp_path / "p.yml"
    f.write_text("name: t\ncomponents:\n  n:{source: sequence}\n")
    with pytest.raises(DefinitionError, match=r"a key needs a space after its ':'"):
        load_pipeline(f)


def test_config_set_suggests_the_nearest_key_and_vertex(tmp_path, component):
    cdir = component(
        "k",
        """
        name: k
        worker:
          input_type: Int64
          output_type: Int64
          config_schema: {threshold: {type: Double, default: 0.5}}
    """,
        "",
    )
    p = parse_pipeline(
        {
            "name": "t",
            "components": {
                "a": {"source": "sequence", "count": 1},
                "scale": {"path": str(cdir)},
                "o": {"sink": "null"},
            },
            "connections": ["a -> scale", "scale -> o"],
        },
        tmp_path / "p.yml",
    )
    s = Scheduler(p)
    [reply] = s.config_set(P.ConfigSet("scale", {"treshold": "0.7"}), b"c", 0.0)
    assert "'treshold' is not in config_schema; did you mean 'threshold'?" in P.decode(reply.frames)[0].error
    [reply] = s.config_set(P.ConfigSet("scael", {"threshold": "0.7"}), b"c", 0.0)
    error = P.decode(reply.frames)[0].error
    assert "unknown component vertex 'scael'; did you mean 'scale'? (component vertices: scale)" in error


def _validate(path):
    from click.testing import CliRunner

    from pipelogic.cli import main

    return CliRunner().invoke(main, ["validate", str(path)])


def test_validate_checks_imports_and_the_run_function_without_running_main(tmp_path, component):
    yml = "name: w\nworker: {input_type: Int64, output_type: Int64}\n"
    marker = tmp_path / "ran"
    cdir = component(
        "w",
        yml,
        f"open({str(marker)!r}, 'w').close()\nimport not_a_module_xyz\n"
        "from pipelogic.worker import run\n\ndef f(a, b):\n    return a\n\nrun(f)\n",
    )
    r = _validate(cdir)
    assert r.exit_code == 2, r.output
    assert f"{cdir / 'src' / 'main.py'}:2:1: imports 'not_a_module_xyz', which is not installed here" in r.output
    assert (
        "main.py:8:1: component w: worker function 'f' takes 2 positional input(s) but component.yml declares "
        "1 input stream(s)" in r.output
    )
    assert not marker.exists()  # nothing of main.py ran
    # With src/requirements.txt the image may install it: a warning; a default makes f fit.
    (cdir / "src" / "requirements.txt").write_text("not-a-module-xyz==1.0\n")
    (cdir / "src" / "main.py").write_text(
        "import not_a_module_xyz\nimport helper\nfrom pipelogic.worker import run\n\n"
        "def f(a, b=1, *, state=None):\n    return a\n\nrun(f, initial_state=0)\n"
    )
    (cdir / "src" / "helper.py").write_text("")
    r = _validate(cdir)
    assert r.exit_code == 0, r.output
    assert "warning: " in r.output and "imports 'not_a_module_xyz'" in r.output and "helper" not in r.output


def test_every_help_text_is_plain_text():
    """Issue 25, item 6: no rst or markdown markup (``x``, `x`) in what --help prints."""
    import click
    from click.testing import CliRunner

    from backend_stub.__main__ import main as broker_main
    from pipelogic.cli import main

    def commands(group: click.Group, prefix: list[str]):
        for name, cmd in group.commands.items():
            if name == "broker":
                continue  # it hands everything to the broker's own command line (below)
            yield [*prefix, name]
            if isinstance(cmd, click.Group):
                yield from commands(cmd, [*prefix, name])

    helps = [CliRunner().invoke(main, [*path, "--help"]).output for path in [[], *commands(main, [])]]
    helps.append(CliRunner().invoke(broker_main, ["--help"]).output)
    assert len(helps) > 15
    for text in helps:
        assert text.startswith("Usage:") and "`" not in text, text
