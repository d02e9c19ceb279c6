"""Several pipelines per folder and per machine (issue 25, items 1 and 2): each pipeline
file has a state directory of its own, `up` listens on a free port, and the operator
commands find the broker of the pipeline running beside them with no flags."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import wait_until

DOUBLE = Path(__file__).resolve().parents[2] / "examples" / "double"


def _pipeline(folder: Path, stem: str, count: int, rate: int) -> Path:
    f = folder / f"{stem}.yml"
    f.write_text(
        textwrap.dedent(f"""
        name: {stem}
        components:
          n: {{source: sequence, count: {count}{f", rate: {rate}" if rate else ""}}}
          d: {{path: {DOUBLE}}}
          out: {{sink: jsonl, path: out/{stem}.jsonl}}
        connections: [n -> d, d -> out]
    """)
    )
    return f


@pytest.fixture
def env(cli_env):
    e = dict(cli_env)
    e.pop("PIPELOGIC_BROKER", None)  # the commands must find the broker themselves
    return e


def _up(f: Path, env: dict, *extra: str) -> subprocess.Popen[str]:
    # No --listen and no --state-dir: the defaults are what is tested.
    return subprocess.Popen(
        [sys.executable, "-m", "pipelogic", "up", str(f), "--no-progress", "--timeout", "120", *extra],
        env=env,
        cwd=f.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelogic", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _outputs(folder: Path, stem: str) -> list[int]:
    return [json.loads(x) for x in (folder / "out" / f"{stem}.jsonl").read_text().split()]


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()


def test_two_pipelines_of_one_folder_run_at_once_and_the_commands_find_each(tmp_path, env):
    a = _pipeline(tmp_path, "a", 3000, 300)
    b = _pipeline(tmp_path, "b", 3000, 300)
    held = socket.socket()  # the old fixed port, taken: nothing may depend on it
    try:
        held.bind(("127.0.0.1", 5550))
    except OSError:
        pass  # already taken by someone else: as good
    procs = [_up(a, env)]
    try:
        wait_until(lambda: (tmp_path / ".pipelogic" / "a" / "broker.json").is_file(), 30, "a's broker to listen")
        # One pipeline in the folder: no flags needed.
        st = _cli(["status", "--json"], env, tmp_path)
        assert st.returncode == 0, st.stderr
        assert json.loads(st.stdout)["pipeline"] == "a"
        procs.append(_up(b, env))
        wait_until(lambda: (tmp_path / ".pipelogic" / "b" / "broker.json").is_file(), 30, "b's broker to listen")
        # Two: the command says so and how to name one; named, each answers for its own.
        both = _cli(["status"], env, tmp_path)
        assert both.returncode == 1
        assert "2 pipelines run in this folder: a.yml (tcp://127.0.0.1:" in both.stderr, both.stderr
        assert "pipelogic status a.yml" in both.stderr
        for stem in ("a", "b"):
            st = _cli(["status", f"{stem}.yml", "--json"], env, tmp_path)
            assert st.returncode == 0 and json.loads(st.stdout)["pipeline"] == stem, st.stderr
        applied = _cli(["config", "set", "d", "--pipeline", "b.yml", "factor=2"], env, tmp_path)
        # b's broker answered (d takes no config): the command found it with no --broker
        assert applied.returncode == 1 and "'factor' is not in config_schema" in applied.stderr, applied.stderr
        tap = _cli(["tap", "n", "-p", "a.yml", "-n", "3"], env, tmp_path)
        assert tap.returncode == 0, tap.stderr
        assert len(tap.stdout.split()) == 3
        for p in procs:
            out, _ = p.communicate(timeout=150)
            assert p.returncode == 0, out
    finally:
        _stop(procs)
        held.close()
    assert _outputs(tmp_path, "a") == [2 * i for i in range(3000)]
    assert _outputs(tmp_path, "b") == [2 * i for i in range(3000)]
    # Each its own run, each recorded apart; the address files are gone with their brokers.
    assert (tmp_path / ".pipelogic" / "a" / ".broker").is_dir() and (tmp_path / ".pipelogic" / "b" / ".broker").is_dir()
    assert not list(tmp_path.glob(".pipelogic/*/broker.json"))
    gone = _cli(["status", "a.yml"], env, tmp_path)
    assert gone.returncode == 1 and "this pipeline is not running here" in gone.stderr


def test_an_unfinished_run_of_one_file_does_not_block_another_file_of_the_folder(tmp_path, env):
    a = _pipeline(tmp_path, "a", 100_000, 500)
    b = _pipeline(tmp_path, "b", 500, 0)
    up_a = _up(a, env)
    try:
        wait_until(
            lambda: (tmp_path / "out" / "a.jsonl").is_file() and (tmp_path / "out" / "a.jsonl").stat().st_size > 100,
            60,
            "a to write",
        )
    finally:
        _stop([up_a])  # Ctrl-C-like: a stays unfinished, resumable
    r = _cli(["up", str(b), "--no-progress", "--timeout", "90"], env, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "another version" not in r.stdout + r.stderr
    assert _outputs(tmp_path, "b") == [2 * i for i in range(500)]


def test_a_broker_that_cannot_listen_records_no_run(tmp_path, env):
    a = _pipeline(tmp_path, "a", 200, 0)
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        r = _cli(["up", str(a), "--listen", f"tcp://127.0.0.1:{port}", "--no-progress"], env, tmp_path)
    finally:
        held.close()
    assert r.returncode != 0 and "is in use" in r.stderr, r.stdout + r.stderr
    # Nothing recorded: no store, no sink file; the next attempt is a first start.
    assert not (tmp_path / ".pipelogic" / "a" / ".broker").exists()
    assert not (tmp_path / "out" / "a.jsonl").exists()
    r = _cli(["up", str(a), "--no-progress", "--timeout", "90"], env, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming run" not in r.stdout + r.stderr
    assert _outputs(tmp_path, "a") == [2 * i for i in range(200)]


def test_a_worker_whose_vertex_finished_is_not_started_again(tmp_path, env):
    """Issue 25, item 3: a worker that exited 0 because its stream ended was started again
    while other vertices still ran (`up` took "the run goes on" for "restart it"); in the
    README's example that second worker then waited for a broker that was gone."""
    f = tmp_path / "two.yml"
    f.write_text(
        textwrap.dedent(f"""
        name: two
        components:
          short: {{source: sequence, count: 10}}
          long: {{source: sequence, count: 1500, rate: 500}}
          fast: {{path: {DOUBLE}}}
          slow: {{path: {DOUBLE}}}
          o1: {{sink: jsonl, path: out/fast.jsonl}}
          o2: {{sink: jsonl, path: out/slow.jsonl}}
        connections: [short -> fast, fast -> o1, long -> slow, slow -> o2]
    """)
    )
    r = _cli(["up", str(f), "--no-progress", "--timeout", "90"], env, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    log = r.stdout + r.stderr
    # One process for `fast`, which finished seconds before the run did.
    assert log.count("vertex fast connected") == 1, log
    assert "waiting for the broker" not in log, log
    assert _outputs(tmp_path, "fast") == [2 * i for i in range(10)]
    assert _outputs(tmp_path, "slow") == [2 * i for i in range(1500)]
