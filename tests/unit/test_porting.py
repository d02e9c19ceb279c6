"""Issue 24: a component written the way the platform's docs write it. Pure checks: the
requirements rules, build_system, the platform's component.yml keys, type variables named
like catalog types, worker.cache in the compose file."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from pipelogic.cli._checks import static_problems
from pipelogic.component import load_component
from pipelogic.containers import ComposeOptions, render_compose
from pipelogic.errors import DefinitionError
from pipelogic.pipeline import parse_pipeline
from pipelogic.porting import (
    build_system_note,
    has_requirements,
    read_requirements,
    requirement_notes,
)

MAIN = "from pipelogic.worker import run\nrun(lambda x: x)\n"


def test_an_empty_or_comment_only_requirements_file_asks_for_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    assert not has_requirements(tmp_path)  # no file
    (src / "requirements.txt").write_text("")
    assert not has_requirements(tmp_path)  # as `pipelogic init` writes it
    (src / "requirements.txt").write_text("# nothing yet\n\n   # still nothing\n")
    assert not has_requirements(tmp_path)
    (src / "requirements.txt").write_text("# a model\nonnxruntime==1.22.0  # pinned\n")
    assert has_requirements(tmp_path)
    [r] = read_requirements(src / "requirements.txt")
    assert (r.line, r.name, r.pinned) == (2, "onnxruntime", True)


def test_requirements_get_the_platforms_rules_as_warnings_naming_the_line(tmp_path):
    f = tmp_path / "requirements.txt"
    f.write_text(
        textwrap.dedent("""\
        # the platform's docs: pin with ==, do not list what the base has
        onnxruntime==1.22.0
        scikit-learn>=1.3
        Pillow
        numpy==1.26.4
        PyYAML
        opencv-python==4.10.0.84
        ultralytics[export]==8.3.0 ; python_version >= "3.9"
        git+https://example.invalid/x.git@v1#egg=x
        -r more.txt
        """)
    )
    notes = requirement_notes(f)
    assert len(notes) == 5, notes
    assert notes[0].startswith(f"{f}:3: 'scikit-learn>=1.3' is not pinned") and "scikit-learn==X.Y.Z" in notes[0]
    assert notes[1].startswith(f"{f}:4: 'Pillow' is not pinned")
    assert notes[2].startswith(f"{f}:5: 'numpy==1.26.4': the runtime image already has numpy==")
    assert notes[3].startswith(f"{f}:6: 'PyYAML': the runtime image already has pyyaml==")
    assert notes[4].startswith(f"{f}:7: ") and "a second opencv distribution" in notes[4]


@pytest.mark.parametrize(
    "key, said",
    [
        ("2-cuda12.8-torch2.8-onnxrtgpu1.22", "CUDA 12.8, PyTorch 2.8, onnxruntime-gpu 1.22"),
        ("1-cpu", "CPU only"),
    ],
)
def test_build_system_keys_are_checked_and_mapped(key, said):
    error, note = build_system_note(key)
    assert error is None and said in note and "pipelogic runtime image" in note
    assert ("no GPU is used here" in note) == ("cuda" in key)


@pytest.mark.parametrize("bad", ["cuda12", "2_cuda", "", 3, "2-CUDA12"])
def test_a_malformed_build_system_is_an_error(bad):
    error, _ = build_system_note(bad)
    assert error is not None and "2-cuda12.8-torch2.8-onnxrtgpu1.22" in error


PLATFORM_YML = """
    name: detector
    language: py
    platform: linux/amd64
    build_system: 2-cuda12.8-torch2.8-onnxrtgpu1.22
    install: [curl]
    categories: [vision]
    modalities: [image]
    tags: [yolo]
    depends_on: [triton]
    http:
      ingress: [{path: /health, port: 8080}]
    worker:
      input_type: frame
      output_type: "[point]"
      cache: {models: /root/.cache}
      config_schema:
        k: {type: Int64, default: 1}
"""


def test_the_platforms_component_keys_are_accepted_and_what_differs_is_said(component):
    d = component("detector", PLATFORM_YML, MAIN)
    spec = load_component(d)
    notes = "\n".join(spec.notes)
    assert "build_system 2-cuda12.8-torch2.8-onnxrtgpu1.22" in notes and "no GPU is used here" in notes
    assert "depends_on: the platform starts triton beside the component; no such service runs here" in notes
    assert "http: the platform routes these HTTP endpoints" in notes
    assert "worker.cache: a cache that survives runs: here the worker gets PIPELOGIC_CACHE_DIR" in notes
    # `frame` and `point` are type variables, as the docs name them: warnings, not errors.
    assert (
        "worker.input_type: 'frame' is a type variable (lowercase names are); did you mean 'VideoFrame'?" in notes
        or "'frame' is a type variable" in notes
    )
    assert "'point' is a type variable (lowercase names are); did you mean 'Point'?" in notes
    errors, warnings = static_problems(spec)
    assert not errors and set(spec.notes) <= set(warnings)


def test_atomic_type_names_in_lower_case_stay_errors_and_a_bad_build_system_is_refused(component):
    with pytest.raises(DefinitionError, match="'int64' is a type variable .*did you mean 'Int64'"):
        load_component(component("a", "name: a\nworker: {input_type: int64, output_type: Int64}\n", MAIN))
    with pytest.raises(DefinitionError, match=r"component.yml:1:\d+: build_system: expected a build_system key"):
        load_component(
            component("b", "build_system: gpu\nname: b\nworker: {input_type: Int64, output_type: Int64}\n", MAIN)
        )


def test_worker_cache_is_a_volume_in_containers(tmp_path, component):
    component("cached", "name: cached\nworker: {input_type: Int64, output_type: Int64, cache: true}\n", MAIN)
    pl = parse_pipeline(
        {
            "name": "c",
            "components": {"n": {"source": "sequence", "count": 1}, "w": {"path": "./cached"}, "o": {"sink": "null"}},
            "connections": ["n -> w", "w -> o"],
        },
        tmp_path / "pipeline.yml",
    )
    doc = yaml.safe_load(render_compose(pl, tmp_path / "compose.yaml", ComposeOptions("img:1")))
    w = doc["services"]["w"]
    assert "cache-cached:/cache" in w["volumes"] and w["environment"]["PIPELOGIC_CACHE_DIR"] == "/cache"
    assert "cache-cached" in doc["volumes"]
