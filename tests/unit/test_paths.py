"""Data paths stay in the pipeline's folder unless pipeline.yml opts out, visibly
(issue 29, item 7): file sinks and sources, dead letters and `files:` slots."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelogic.errors import DefinitionError
from pipelogic.pipeline import load_pipeline

READER = """
    name: reader
    worker:
      input_type: Int64
      output_type: Int64
      file_schema:
        model: {file_type: txt, config_key: model_path, is_optional: false}
"""


def _pipeline(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "pipeline.yml"
    f.write_text(textwrap.dedent(body))
    return f


def _reader(base: Path) -> Path:
    d = base / "reader"
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text(textwrap.dedent(READER))
    (d / "src" / "main.py").write_text("from pipelogic.worker import run\nrun(lambda x: x)\n")
    return d


@pytest.mark.parametrize("path", ["../../elsewhere/out.jsonl", "/tmp/pipelogic-outside/out.jsonl"])
def test_a_sink_path_outside_the_folder_is_refused_naming_the_key_and_the_opt_in(tmp_path, path):
    f = _pipeline(
        tmp_path / "a" / "b",
        f"""
        name: t
        components:
          n: {{source: sequence, count: 3}}
          out: {{sink: jsonl, path: "{path}"}}
        connections: [n -> out]
    """,
    )
    with pytest.raises(DefinitionError) as err:
        load_pipeline(f)
    text = str(err.value)
    assert "components.out.path" in text and "outside the pipeline's folder" in text
    assert "allow_paths_outside" in text


def test_source_dead_letter_and_files_slot_outside_are_each_refused(tmp_path):
    _reader(tmp_path)
    (tmp_path / "w.txt").write_text("w")
    f = _pipeline(
        tmp_path / "p",
        """
        name: t
        components:
          n: {source: jsonl, path: ../in.jsonl}
          r: {path: ../reader, files: {model: ../w.txt}, on_error: skip, dead_letter: ../dl.jsonl}
          out: {sink: jsonl, path: out/x.jsonl}
        connections: [n -> r, r -> out]
    """,
    )
    with pytest.raises(DefinitionError) as err:
        load_pipeline(f)
    text = str(err.value)
    for key in ("components.n.path", "components.r.files.model", "components.r.dead_letter"):
        assert key in text, text
    assert "components.out.path" not in text  # inside: fine; the component's own folder is not data


def test_a_symlink_inside_that_points_outside_is_outside(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    p = tmp_path / "p"
    p.mkdir()
    os.symlink(tmp_path / "elsewhere", p / "link")
    f = _pipeline(
        p,
        """
        name: t
        components:
          n: {source: sequence, count: 3}
          out: {sink: jsonl, path: link/x.jsonl}
        connections: [n -> out]
    """,
    )
    with pytest.raises(DefinitionError, match="components.out.path"):
        load_pipeline(f)


def _sharing(tmp_path: Path, **sinks: str) -> Path:
    """A pipeline in tmp_path/p that lists tmp_path/shared under allow_paths_outside, with a
    jsonl sink at each of the given paths."""
    (tmp_path / "shared").mkdir(exist_ok=True)
    body = "".join(f"  {name}: {{sink: jsonl, path: {path}}}\n" for name, path in sinks.items())
    return _pipeline(
        tmp_path / "p",
        "name: t\nallow_paths_outside: [../shared]\ncomponents:\n"
        f"  n: {{source: sequence, count: 3}}\n{body}"
        f"connections: [{', '.join(f'n -> {name}' for name in sinks)}]\n",
    )


def test_allow_paths_outside_lets_the_listed_folders_only(tmp_path):
    f = _sharing(tmp_path, out="../shared/sub/x.jsonl", out2="../other/x.jsonl")
    with pytest.raises(DefinitionError) as err:
        load_pipeline(f)
    assert "components.out2.path" in str(err.value) and "components.out.path" not in str(err.value)
    f.write_text(f.read_text().replace("../other/x.jsonl", "../shared/y.jsonl"))
    pl = load_pipeline(f)
    assert pl.outside == [(tmp_path / "shared").resolve()]


@pytest.mark.parametrize("entry", ["/", "../../../../../../../../.."])
def test_the_whole_file_system_cannot_be_allowed(tmp_path, entry):
    f = _pipeline(
        tmp_path / "p",
        f"""
        name: t
        allow_paths_outside: ["{entry}"]
        components:
          n: {{source: sequence, count: 3}}
          out: {{sink: jsonl, path: /tmp/x.jsonl}}
        connections: [n -> out]
    """,
    )
    with pytest.raises(DefinitionError, match=r"allow_paths_outside\[0\]: .*the whole file system cannot be allowed"):
        load_pipeline(f)


def test_validate_prints_the_opt_in(tmp_path, cli_env):
    f = _sharing(tmp_path, out="../shared/x.jsonl")
    r = subprocess.run(
        [sys.executable, "-m", "pipelogic", "validate", str(f)], capture_output=True, text=True, env=cli_env, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert f"note: {f}: allow_paths_outside: reads and writes files in {(tmp_path / 'shared').resolve()}" in r.stdout
