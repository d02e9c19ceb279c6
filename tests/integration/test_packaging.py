"""What a user installs: package data that exists, types a user's checker can see, and
example pipelines that run as their comments say."""

import glob
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_package_data_names_only_files_that_exist():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package, patterns in cfg["tool"]["setuptools"]["package-data"].items():
        base = ROOT / package.replace(".", "/")
        assert base.is_dir(), f"package-data names a package that does not exist: {package}"
        for pattern in patterns:
            assert glob.glob(str(base / pattern)), f"package-data {package}: {pattern} matches nothing"


def test_user_code_type_checks_against_the_installed_package(tmp_path):
    pytest.importorskip("mypy")
    (tmp_path / "main.py").write_text(
        "from pipelogic.worker import InputsPullRequest, config, run, virtual_in\n\n"
        "def double(x: int) -> int:\n    return x * 2\n\n"
        "run(double)\nrun(3)\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "main.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # The package is found and typed (py.typed): the one error is the user's own.
    assert 'main.py:7: error: Argument 1 to "run" has incompatible type "int"' in r.stdout, r.stdout
    assert "import-not-found" not in r.stdout and "import-untyped" not in r.stdout
    assert r.stdout.strip().endswith("Found 1 error in 1 file (checked 1 source file)")


def test_the_tour_example_runs_with_its_losses_reported(tmp_path, cli_env):
    import shutil

    for d in ("tour", "positive", "double", "counter"):
        shutil.copytree(ROOT / "examples" / d, tmp_path / d, ignore=shutil.ignore_patterns(".pipelogic", "out"))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelogic",
            "up",
            str(tmp_path / "tour" / "pipeline.yml"),
            "--listen",
            "tcp://127.0.0.1:0",
            "--timeout",
            "90",
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert [x for x in r.stdout.splitlines() if x.startswith("show: ")] == ["show: 3", "show: 4", "show: 1", "show: 9"]
    assert (tmp_path / "tour" / "out" / "doubled.jsonl").read_text().split() == ["1", "2", "3", "4"]
    assert len((tmp_path / "tour" / "out" / "rejected.jsonl").read_text().splitlines()) == 2
    assert "with losses (clean: 2 tick(s) skipped on error" in r.stdout


def test_shell_completion_script_is_generated(cli_env):
    r = subprocess.run(
        [sys.executable, "-m", "pipelogic"],
        env=dict(cli_env, _PIPELOGIC_COMPLETE="bash_source"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "_pipelogic_completion" in r.stdout
