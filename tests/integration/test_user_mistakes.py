"""A new user's first mistakes: each gets one clear message, once, and the right
exit code; real `pipelogic` processes, real brokers and workers."""

import json
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import BrokerProc, run_up

PY = sys.executable
INT_COMPONENT = "name: {name}\nlanguage: py\nworker: {{input_type: Int64, output_type: Int64}}\n"
IDENTITY = "from pipelogic.worker import run\n\ndef f(x):\n    return x\n\nrun(f)\n"


def cli(
    *args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "pipelogic", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


def comp(tmp_path: Path, name: str, main: str, yml: str | None = None) -> Path:
    d = tmp_path / name
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text(textwrap.dedent(yml) if yml else INT_COMPONENT.format(name=name))
    (d / "src" / "main.py").write_text(textwrap.dedent(main))
    return d


def pipe(source: str = "{source: sequence, count: 20}", vertex: str = "w") -> str:
    return f"""
        name: p
        components:
          n: {source}
          {vertex}: {{path: ./{vertex}}}
          out: {{sink: jsonl, path: ./out.jsonl}}
        connections: [n -> {vertex}, {vertex} -> out]
    """


def internal_frames(text: str) -> list[str]:
    """Traceback lines that point into pipelogic, backend_stub, click or runpy."""
    return [
        line for line in text.splitlines() if re.search(r'File ".*(/pipelogic/|/backend_stub/|/click/|runpy)', line)
    ]


# -- 1. bad files: file:line:col, no traceback, every command ---------------------------------


def test_a_yaml_syntax_error_is_one_line_with_its_position_in_every_command(tmp_path, cli_env):
    f = tmp_path / "pipeline.yml"
    f.write_text("name: x\ncomponents:\n  n: {source: sequence, count: 10\n  out: {sink: stdout}\n")
    for args in (["validate", str(f)], ["up", str(f)], ["compose", str(f), "-o", "-"], ["broker", str(f)]):
        r = cli(*args, env=cli_env)
        assert r.returncode == 2, (args, r.stderr)
        assert f"{f}:4:6: not valid YAML: expected ',' or '}}', but got ':'" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout and "<unicode string>" not in r.stderr
    r = cli("--debug", "validate", str(f), env=cli_env)
    assert "Traceback" in r.stderr  # --debug shows where it was raised


def test_a_key_given_twice_is_refused(tmp_path, cli_env):
    f = tmp_path / "pipeline.yml"
    f.write_text("name: x\ncomponents:\n  n: {source: sequence, count: 1}\n  n: {sink: stdout}\nconnections: []\n")
    r = cli("validate", str(f), env=cli_env)
    assert r.returncode == 2 and "4:3: not valid YAML: duplicate key 'n' (first at line 3)" in r.stderr


# -- 2. unknown keys and typos of type names ----------------------------------------------------


def test_unknown_keys_are_errors_with_a_hint(tmp_path, cli_env):
    comp(
        tmp_path,
        "w",
        IDENTITY,
        """
        name: w
        categories: [demo]
        tags: [x]
        worker:
          inputtype: Int64
          output_type: Int64
          config_schema: {k: {type: Int64, defualt: 1}}
    """,
    )
    f = tmp_path / "pipeline.yml"
    f.write_text(
        textwrap.dedent("""\
        name: p
        components:
          n: {source: sequence, cnt: 10}
          w: {path: ./w, on_eror: skip}
          out: {sink: stdout}
        conections: [n -> w, w -> out]
        settings: {credits: 4}
    """)
    )
    r = cli("validate", str(f), env=cli_env)
    assert r.returncode == 2
    err = r.stderr
    assert "pipeline.yml:6:1: conections: unknown key 'conections'; did you mean 'connections'?" in err
    assert "pipeline.yml:3:25: components.n.cnt: unknown key 'cnt'; did you mean 'count'?" in err
    assert "pipeline.yml:4:18: components.w.on_eror: unknown key 'on_eror'; did you mean 'on_error'?" in err
    assert "pipeline.yml:7:12: settings.credits: unknown key 'credits'; did you mean 'credit'?" in err
    assert "component.yml:6:3: worker.inputtype: unknown key 'inputtype'; did you mean 'input_type'?" in err
    assert "worker.config_schema.k.defualt: unknown key 'defualt'; did you mean 'default'?" in err
    assert "categories" not in err and "tags" not in err  # the platform's other keys are kept


def test_a_lowercase_type_name_is_refused_with_the_type_it_resembles(tmp_path, cli_env):
    comp(tmp_path, "w", IDENTITY, "name: w\nworker: {input_type: int64, output_type: '[strng]'}\n")
    r = cli("validate", str(tmp_path / "w"), env=cli_env)
    assert r.returncode == 2
    assert "worker.input_type: 'int64' is a type variable (lowercase names are); did you mean 'Int64'?" in r.stderr
    assert "'strng' is a type variable (lowercase names are); did you mean 'String'?" in r.stderr
    # A real type variable is fine.
    comp(tmp_path, "v", IDENTITY, "name: v\nworker: {input_type: a, output_type: a}\n")
    assert cli("validate", str(tmp_path / "v"), env=cli_env).returncode == 0


# -- 3. validate checks the code, and says one thing per problem --------------------------------


def test_validate_checks_main_py_and_reports_no_follow_on_errors(tmp_path, cli_env):
    comp(tmp_path, "w", "def f(x):\n    return x +\n")
    r = cli("validate", str(tmp_path / "w"), env=cli_env)
    assert r.returncode == 2 and f"{tmp_path / 'w' / 'src' / 'main.py'}:2:15: SyntaxError: invalid syntax" in r.stderr
    (tmp_path / "w" / "src" / "main.py").unlink()
    r = cli("validate", str(tmp_path / "w"), env=cli_env)
    assert r.returncode == 2 and "src/main.py: no such file" in r.stderr
    # A component that fails to load: its problem only, not "input 0 is not connected" after it.
    (tmp_path / "w" / "component.yml").write_text("name: w\nworker: {input_type: Nope, output_type: Int64}\n")
    (tmp_path / "pipeline.yml").write_text(textwrap.dedent(pipe()))
    r = cli("validate", str(tmp_path / "pipeline.yml"), env=cli_env)
    assert r.returncode == 2 and "unknown type 'Nope'" in r.stderr
    assert "not connected" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("validate", str(empty), env=cli_env)
    assert (
        r.returncode == 2
        and r.stderr.strip()
        == f"error: {empty}: neither component.yml nor pipeline.yml is here; "
        "give a component directory, a pipeline directory or a file"
    )


# -- 4. a component that cannot start: once, user's frames, no retries --------------------------


@pytest.mark.parametrize(
    "main, expect",
    [
        ("import not_a_module_xyz\n", "ModuleNotFoundError: No module named 'not_a_module_xyz'"),
        (
            "from pipelogic.worker import run\n\ndef f(a, b):\n    return a\n\nrun(f)\n",
            "takes 2 positional input(s) but component.yml declares 1 input stream(s)",
        ),
        ("def f(x):\n    return x\n", "finished without calling pipelogic.worker.run(fn)"),
    ],
)
def test_a_component_that_fails_at_start_is_reported_once_and_not_retried(tmp_path, cli_env, main, expect):
    comp(tmp_path, "w", main)
    t0 = time.monotonic()
    r = run_up(tmp_path, pipe(), cli_env)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert out.count(expect) == 1, out
    assert "restarting" not in out and "failed to start" in out
    assert internal_frames(out) == [], out
    assert time.monotonic() - t0 < 60
    # The final table tells the truth (issue 25, item 4): the run failed, and so did w.
    assert "pipeline p: failed" in r.stdout, r.stdout
    row = next(line.split() for line in r.stdout.splitlines() if line.startswith("w "))
    assert row[2] == "failed", r.stdout


# -- 5. a worker that exits 0 on its own --------------------------------------------------------


def test_a_worker_exit_the_broker_did_not_ask_for_is_a_crash(tmp_path, cli_env):
    comp(
        tmp_path,
        "w",
        """
        import os
        from pathlib import Path
        from pipelogic.worker import run

        MARK = Path(__file__).parent / "exited-once"

        def f(x):
            if x == 7 and not MARK.exists():
                MARK.write_text("")
                os._exit(0)
            return x

        run(f)
    """,
    )
    r = run_up(tmp_path, pipe(), cli_env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "w      | exited with code 0 before its stream ended" in out, out
    assert "restarting in" in out
    assert [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().split()] == list(range(20))


# -- 6. the port is taken -----------------------------------------------------------------------


def test_a_busy_port_is_named_every_time_with_the_fix(tmp_path, cli_env):
    (tmp_path / "pipeline.yml").write_text(
        "name: p\ncomponents:\n  n: {source: sequence, count: 3}\n  o: {sink: null}\nconnections: [n -> o]\n"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        for _ in range(3):
            r = cli("up", str(tmp_path / "pipeline.yml"), "--listen", f"tcp://127.0.0.1:{port}", env=cli_env)
            assert r.returncode == 5, r.stderr
            assert f"tcp://127.0.0.1:{port} is in use" in r.stderr and "--listen tcp://127.0.0.1:0" in r.stderr
            r = cli("broker", str(tmp_path / "pipeline.yml"), "--listen", f"tcp://127.0.0.1:{port}", env=cli_env)
            assert r.returncode == 5 and f"tcp://127.0.0.1:{port} is in use" in r.stderr


# -- 7. a worker error: once, with the user's frames only ---------------------------------------


def test_a_wrong_return_type_is_reported_once_naming_the_function(tmp_path, cli_env):
    comp(
        tmp_path,
        "w",
        """
        from pipelogic.worker import run

        def double(x):
            return "oops" if x == 3 else x * 2

        run(double)
    """,
    )
    r = run_up(tmp_path, pipe(), cli_env)
    out = r.stdout + r.stderr
    assert r.returncode == 1
    assert out.count("expected Int64, got str ('oops')") == 1, out
    assert f"returned by double at {tmp_path / 'w' / 'src' / 'main.py'}:4" in out
    assert "Traceback" not in out and internal_frames(out) == []
    assert re.search(r"^w\s+component\s+failed\s", r.stdout, re.M), r.stdout  # the table shows it failed


def test_a_user_exception_is_reported_once_with_the_users_frames(tmp_path, cli_env):
    comp(
        tmp_path,
        "w",
        """
        from pipelogic.worker import run

        def check(x):
            if x == 3:
                raise ValueError("boom at three")
            return x

        def f(x):
            return check(x)

        run(f)
    """,
    )
    r = run_up(tmp_path, pipe(), cli_env)
    out = r.stdout + r.stderr
    assert r.returncode == 1
    assert out.count("Traceback (most recent call last)") == 1, out
    assert out.count("ValueError: boom at three") == 1, out
    assert 'main.py", line 10, in f' in out and 'main.py", line 6, in check' in out
    assert internal_frames(out) == [], out


# -- 8. a worker for the wrong vertex is refused at the handshake ---------------------------------


def test_a_worker_whose_types_differ_from_its_vertex_is_refused_at_once(tmp_path, cli_env):
    comp(tmp_path, "w", IDENTITY)
    other = comp(tmp_path, "s", IDENTITY, "name: s\nworker: {input_type: String, output_type: String}\n")
    (tmp_path / "pipeline.yml").write_text(textwrap.dedent(pipe()))
    broker = BrokerProc(tmp_path / "pipeline.yml", cli_env)
    try:
        env = dict(cli_env, PIPELOGIC_BROKER=broker.endpoint, PIPELOGIC_COMPONENT="w")
        r = cli("worker", str(other), env=env, timeout=60)
        assert r.returncode == 2, r.stderr
        assert (
            "the worker's component.yml declares inputs (String) -> outputs (String), but this vertex's component"
            in r.stderr
            and "declares inputs (Int64) -> outputs (Int64)" in r.stderr
        )
        assert r.stderr.count("error:") == 1 and "Traceback" not in r.stderr
    finally:
        broker.stop()


# -- 9. no broker: say so, quickly ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_worker_with_no_broker_says_where_it_waits_and_how_long(tmp_path, cli_env):
    d = comp(tmp_path, "w", IDENTITY)
    addr = f"tcp://127.0.0.1:{free_port()}"
    env = dict(cli_env, PIPELOGIC_BROKER=addr, PIPELOGIC_CONNECT_TIMEOUT_S="4")
    r = cli("worker", str(d), env=env, timeout=60)
    assert r.returncode == 1  # the broker may come later: not a start failure
    assert r.stderr.count(f"waiting for the broker at {addr} (up to 4 s)") == 1, r.stderr
    assert f"no answer from the broker at {addr} within 4 s" in r.stderr


def test_status_with_no_broker_answers_within_about_a_second(cli_env):
    addr = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    r = cli("status", "--broker", addr, env=cli_env)
    took = time.monotonic() - t0
    assert r.returncode == 1 and r.stderr.strip() == f"error: no answer from the broker at {addr} within 1 s"
    assert took < 10  # generous: interpreter start-up dominates on a loaded machine; the wait is 1 s


# -- 11. status: rates, stuck vertices, losses ---------------------------------------------------


def _status(endpoint: str, env: dict) -> dict:
    r = cli("status", "--json", "--broker", endpoint, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_status_shows_rates_a_stuck_vertex_and_losses(tmp_path, cli_env):
    comp(
        tmp_path,
        "w",
        """
        import time
        from pipelogic.worker import run

        def f(x):
            while x == 150:
                time.sleep(1)  # stuck for good; its heartbeat thread still beats
            return x

        run(f)
    """,
    )
    f = tmp_path / "pipeline.yml"
    f.write_text(
        textwrap.dedent(pipe("{source: sequence, count: 100000, rate: 100}"))
        + "settings: {heartbeat_ms: 200, liveness: 5}\n"
    )
    broker = BrokerProc(f, cli_env)
    worker = None
    try:
        endpoint = broker.endpoint
        worker = subprocess.Popen(
            [PY, "-m", "pipelogic", "worker", str(tmp_path / "w")],
            stderr=subprocess.DEVNULL,
            env=dict(cli_env, PIPELOGIC_BROKER=endpoint, PIPELOGIC_COMPONENT="w"),
        )
        deadline = time.monotonic() + 60
        seen_rate = False
        while time.monotonic() < deadline:
            st = _status(endpoint, cli_env)
            w = next(v for v in st["vertices"] if v["name"] == "w")
            n = next(v for v in st["vertices"] if v["name"] == "n")
            if w["ticks"] > 20 and w["ticks"] < 150 and n["rate"]:
                assert 20 < n["rate"] < 200 and w["rate"] > 0, st  # about 100/s, loosely
                seen_rate = True
            if w["stuck_s"] > 0:  # reported once past the liveness bound (1 s): 1.0 at the earliest
                break
            time.sleep(0.3)
        assert seen_rate and w["stuck_s"] >= 1 and w["ticks"] == 150, w
        r = cli("status", "--broker", endpoint, env=cli_env)
        assert re.search(r"^w\s+component\s+STUCK \d+s", r.stdout, re.M), r.stdout
        assert "stuck: w has input waiting but completed no tick for" in r.stdout
    finally:
        if worker is not None:
            worker.kill()
            worker.wait(10)
        broker.stop(kill=True)


def test_up_shows_losses_in_its_table_and_final_line(tmp_path, cli_env):
    comp(
        tmp_path,
        "w",
        """
        from pipelogic.worker import run

        def f(x):
            if x % 5 == 0:
                raise ValueError("no multiples of five")
            return x

        run(f)
    """,
    )
    r = run_up(tmp_path, pipe().replace("{path: ./w}", "{path: ./w, on_error: skip}"), cli_env)
    assert r.returncode == 0, r.stderr
    assert "lost: w: 4 tick(s) skipped on error (on_error: skip), inputs in the dead-letter file" in r.stdout
    assert re.search(r"done in [\d.]+ s, with losses \(w: 4 tick\(s\) skipped", r.stdout), r.stdout
    assert re.search(r"^w\s+component\s+finished\s+\d+\s+\S+\s+\S+\s+\S+\s+0\s+4\s+4$", r.stdout, re.M), r.stdout


def test_status_watch_redraws_until_interrupted(tmp_path, cli_env):
    addr = f"tcp://127.0.0.1:{free_port()}"
    p = subprocess.Popen(
        [PY, "-m", "pipelogic", "status", "--broker", addr, "--watch", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )
    try:
        lines = [p.stdout.readline() for _ in range(4)]
        assert sum("no answer from the broker" in x for x in lines) >= 2, lines
    finally:
        p.send_signal(2)
        assert p.wait(10) == 0
        p.stdout.close()
        p.stderr.close()
