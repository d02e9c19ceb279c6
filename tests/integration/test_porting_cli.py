"""Issue 24: components written the way the platform's docs write them, with the real CLI:
`validate` says what differs here, `init` then `compose` needs no image of its own, and
`worker.cache` is a folder kept across runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import run_up

PY = sys.executable


def cli(*args: str, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "pipelogic", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_validate_says_what_the_platform_does_that_does_not_happen_here(tmp_path, cli_env):
    d = tmp_path / "detector"
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text(
        textwrap.dedent("""\
        name: detector
        language: py
        build_system: 2-cuda12.8-torch2.8-onnxrtgpu1.22
        depends_on: [triton]
        worker:
          input_type: image
          output_type: Int64
          file_schema:
            model: {file_type: onnx, config_key: model_name, target: triton}
        """)
    )
    (d / "src" / "main.py").write_text(
        "from pipelogic.worker import run\n\ndef f(state, image):\n"
        "    return {'output': 1, 'state': state}\n\nrun(f, initial_state=0)\n"
    )
    (d / "src" / "requirements.txt").write_text("tritonclient\nnumpy==2.4.6\n")
    r = cli("validate", str(d), env=cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert f"warning: {d / 'component.yml'}:3:15: build_system: build_system 2-cuda12.8-torch2.8-onnxrtgpu1.22" in out
    assert f"{d / 'component.yml'}:4:" in out and "no such service runs here" in out
    assert "worker.input_type: 'image' is a type variable (lowercase names are); did you mean 'Image'?" in out
    assert "no triton runs here" in out
    assert f"{d / 'src' / 'requirements.txt'}:1: 'tritonclient' is not pinned" in out
    assert f"{d / 'src' / 'requirements.txt'}:2: 'numpy==2.4.6': the runtime image already has numpy" in out
    # The special parameters are checked by name: `state` first is fine; without
    # initial_state it is not.
    (d / "src" / "main.py").write_text(
        "from pipelogic.worker import run\n\ndef f(state, image):\n    return 1\n\nrun(f)\n"
    )
    r = cli("validate", str(d), env=cli_env)
    assert r.returncode == 2 and "has a `state` parameter: pass initial_state=... to run()" in r.stderr


def test_a_component_from_init_composes_on_the_runtime_image(tmp_path, cli_env):
    assert cli("init", "scaler", env=cli_env, cwd=tmp_path).returncode == 0
    assert "pinned with ==" in (tmp_path / "scaler" / "src" / "requirements.txt").read_text()
    (tmp_path / "pipeline.yml").write_text(
        textwrap.dedent("""\
        name: p
        components:
          n: {source: sequence, count: 3}
          scaler: {path: ./scaler}
          out: {sink: jsonl, path: ./out.jsonl}
        connections: [n -> scaler, scaler -> out]
        """)
    )
    r = cli("compose", "pipeline.yml", "-o", "-", env=cli_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "command: [worker, /component]" in r.stdout or "/component" in r.stdout


CACHED = """
    import os
    from pathlib import Path
    from pipelogic.worker import run

    cache = Path(os.environ["HF_HOME"])
    marker = cache / "model.bin"
    FRESH = not marker.exists()  # the first run downloads, the next finds it
    cache.mkdir(parents=True, exist_ok=True)
    marker.write_text("weights")

    def f(x):
        return x * 10 + int(FRESH)

    run(f)
"""


def test_worker_cache_is_a_folder_kept_across_runs(tmp_path, cli_env):
    d = tmp_path / "cached"
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text("name: cached\nworker: {input_type: Int64, output_type: Int64, cache: {}}\n")
    (d / "src" / "main.py").write_text(textwrap.dedent(CACHED))
    pipe = """
        name: c
        components:
          n: {source: sequence, count: 2}
          cached: {path: ./cached}
          out: {sink: jsonl, path: ./out.jsonl}
        connections: [n -> cached, cached -> out]
    """
    assert run_up(tmp_path, pipe, cli_env).returncode == 0
    assert (tmp_path / "out.jsonl").read_text().split() == ["1", "11"]
    assert (tmp_path / ".pipelogic" / "cache" / "cached" / "huggingface" / "model.bin").read_text() == "weights"
    r = run_up(tmp_path, pipe, cli_env, "--fresh")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.jsonl").read_text().split() == ["0", "10"]
