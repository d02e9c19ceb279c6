"""The command line, through click's runner and real processes."""

import subprocess
import sys
import time

from click.testing import CliRunner

from pipelogic.cli import main
from tests.helpers import BrokerProc, wait_until


def test_validate_reports_ok_and_problems(tmp_path, component):
    component("c", "name: c\nworker: {input_type: Int64, output_type: Int64}\n", "")
    r = CliRunner().invoke(main, ["validate", str(tmp_path / "c")])
    assert r.exit_code == 0 and "ok: component c" in r.output
    (tmp_path / "p.yml").write_text("name: p\ncomponents:\n  c: {path: ./c}\n  o: {sink: nope}\n")
    r = CliRunner().invoke(main, ["validate", str(tmp_path / "p.yml")])
    assert r.exit_code == 2
    assert "p.yml:4:13: components.o.sink: unknown sink 'nope'" in r.output
    assert "p.yml:3:3: components.c: input 0 (Int64) is not connected" in r.output


def test_init_scaffolds_a_component_whose_test_passes(tmp_path):
    r = CliRunner().invoke(main, ["init", "scaler", "-d", str(tmp_path)])
    assert r.exit_code == 0, r.output
    t = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "scaler" / "tests")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert t.returncode == 0, t.stdout + t.stderr


def test_init_says_how_to_install_pytest_when_it_is_missing(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytest" else real(name, *a))
    r = CliRunner().invoke(main, ["init", "scaler", "-d", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "python -m pip install pytest, then python -m pytest" in r.output


def test_broker_help_lists_every_option_of_the_broker(cli_env):
    """Issue 25, item 6: `pipelogic broker --help` showed --listen alone."""
    r = subprocess.run(
        [sys.executable, "-m", "pipelogic", "broker", "--help"], capture_output=True, text=True, env=cli_env, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: pipelogic broker [OPTIONS] PIPELINE_FILE")
    for option in ("--listen", "--state-dir", "--keys", "--metrics", "--fresh", "--scale", "--serve-forever"):
        assert option in r.stdout, option


def test_status_and_live_config_against_a_running_pipeline(tmp_path, component, cli_env):
    component(
        "cfg",
        """
        name: cfg
        worker:
          input_type: Int64
          output_type: Int64
          config_schema: {factor: {type: Int64, default: 1}}
    """,
        "from pipelogic.worker import config, run\n\ndef f(x):\n    return x * int(config.factor)\n\nrun(f)\n",
    )
    (tmp_path / "p.yml").write_text(
        "name: live\ncomponents:\n  n: {source: sequence, count: 100000, rate: 200}\n  cfg: {path: ./cfg}\n"
        "  o: {sink: jsonl, path: ./out.jsonl}\nconnections: [n -> cfg, cfg -> o]\n"
    )
    broker = BrokerProc(tmp_path / "p.yml", cli_env)
    worker = None
    try:
        endpoint = broker.endpoint
        env = dict(cli_env, PIPELOGIC_BROKER=endpoint, PIPELOGIC_COMPONENT="cfg")
        worker = subprocess.Popen([sys.executable, "-m", "pipelogic", "worker", str(tmp_path / "cfg")], env=env)
        run = CliRunner(env={"PIPELOGIC_BROKER": endpoint})
        for _ in range(100):
            r = run.invoke(main, ["status"])
            if "cfg" in r.output and "running" in r.output.split("cfg", 1)[1].split("\n")[0]:
                break
            time.sleep(0.1)
        assert r.exit_code == 0 and "pipeline live: running" in r.output
        r = run.invoke(main, ["config", "set", "cfg", "factor=1000"])
        assert r.exit_code == 0 and "config version 1 applied by the worker" in r.output, r.output
        r = run.invoke(main, ["config", "set", "cfg", 'factor="x"'])
        assert r.exit_code != 0 and "declared type Int64" in r.output

        def values() -> list[int]:
            return [int(x) for x in (tmp_path / "out.jsonl").read_text().split()]

        wait_until(lambda: values() and values()[-1] >= 1000, 20, "a value with the new factor")
        vals = values()
        assert any(v >= 1000 for v in vals) and vals[0] < 1000  # applied between ticks, live
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(10)
        broker.stop()


def test_status_without_a_broker_fails_clearly():
    r = CliRunner().invoke(main, ["status", "--broker", "tcp://127.0.0.1:1"])
    assert r.exit_code != 0 and "no answer from the broker at tcp://127.0.0.1:1" in r.output


def test_a_relative_state_dir_is_from_where_up_runs(tmp_path, cli_env):
    """`up --state-dir st` from another folder keeps the run in ./st there (not beside the
    pipeline) and says where, absolutely."""
    (tmp_path / "p").mkdir()
    here = tmp_path / "elsewhere"
    here.mkdir()
    f = tmp_path / "p" / "pipeline.yml"
    f.write_text(
        "name: rel\ncomponents:\n  n: {source: sequence, count: 200}\n  out: {sink: null}\nconnections: [n -> out]\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "pipelogic", "up", str(f), "--listen", "tcp://127.0.0.1:0", "--state-dir", "st"],
        cwd=here,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"state in {here / 'st'}" in r.stdout
    assert (here / "st" / ".broker" / "recovery.sqlite3").is_file() and not (tmp_path / "p" / "st").exists()
