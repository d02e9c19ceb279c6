"""`pipelogic tap`, the Prometheus endpoint and logging, against real brokers and workers."""

import itertools
import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.helpers import BrokerProc, free_port, run_up, scrape, wait_until

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
DOUBLE = ROOT / "examples" / "double"


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "pipeline.yml"
    f.write_text(textwrap.dedent(text))
    return f


def start_worker(component: Path, vertex: str, endpoint: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "pipelogic", "worker", str(component)],
        stderr=subprocess.DEVNULL,
        env=dict(env, PIPELOGIC_BROKER=endpoint, PIPELOGIC_COMPONENT=vertex),
    )


def test_tap_prints_live_values_as_json_lines_without_changing_the_run(tmp_path, cli_env):
    f = write(
        tmp_path,
        f"""
        name: tapped
        components:
          n: {{source: sequence, count: 100000, rate: 300}}
          d: {{path: {DOUBLE}}}
          out: {{sink: jsonl, path: ./out.jsonl}}
        connections: [n -> d, d -> out]
    """,
    )
    broker = BrokerProc(f, cli_env)
    worker = start_worker(DOUBLE, "d", broker.endpoint, cli_env)
    try:
        r = subprocess.run(
            [PY, "-m", "pipelogic", "tap", "d", "--count", "50", "--broker", broker.endpoint],
            capture_output=True,
            text=True,
            env=cli_env,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        got = [json.loads(x) for x in r.stdout.split()]
        assert len(got) == 50 and all(b - a == 2 for a, b in itertools.pairwise(got)), got  # consecutive doubles
        assert "tap: d.0 (Int64) from message" in r.stderr
        raw = subprocess.run(
            [PY, "-m", "pipelogic", "tap", "n.0", "-n", "3", "--raw", "--broker", broker.endpoint],
            capture_output=True,
            text=True,
            env=cli_env,
            timeout=60,
        )
        frames = [json.loads(x) for x in raw.stdout.split()]
        assert raw.returncode == 0 and len(frames) == 3 and all(len(x) == 1 for x in frames)
        bad = subprocess.run(
            [PY, "-m", "pipelogic", "tap", "out", "--broker", broker.endpoint],
            capture_output=True,
            text=True,
            env=cli_env,
            timeout=60,
        )
        assert bad.returncode == 1 and "no output streams on vertex 'out'; vertices with outputs: n, d" in bad.stderr
        bad = subprocess.run(
            [PY, "-m", "pipelogic", "tap", "d.3", "--broker", broker.endpoint],
            capture_output=True,
            text=True,
            env=cli_env,
            timeout=60,
        )
        assert bad.returncode == 1 and "vertex d has 1 output stream(s), no stream 3" in bad.stderr
    finally:
        worker.kill()
        worker.wait(10)
        broker.stop(kill=True)
    # The sink saw every value exactly once, in order: the taps took nothing from it.
    vals = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().split()]
    assert vals == [2 * i for i in range(len(vals))]


def test_a_tap_that_falls_behind_loses_and_counts_but_never_slows_the_pipeline(tmp_path, cli_env):
    f = write(
        tmp_path,
        """
        name: fast
        components:
          n: {source: sequence, count: 100000, rate: 20000}
          out: {sink: null}
        connections: [n -> out]
    """,
    )
    from pipelogic.client import BrokerClient

    broker = BrokerProc(f, cli_env, "--serve-forever")
    try:
        client = BrokerClient(broker.endpoint)
        reply, _ = client.tap("n", 0, -1)
        cursor = start = reply.next
        time.sleep(0.5)  # do not poll: the ring fills and the oldest values are evicted
        seen = dropped = 0
        while True:
            reply, payload = client.tap("n", 0, cursor, 1000)
            assert reply.first >= cursor and len(reply.layout) * 1 == len(payload)
            dropped += reply.dropped
            seen += len(reply.layout)
            cursor = reply.next
            if reply.ended:
                break
        st = client.status()
        n = next(v for v in st.vertices if v["name"] == "n")
        assert st.state == "done" and n["ticks"] == 100000
        assert dropped > 0 and seen > 0
        assert cursor == 100000 and seen + dropped == 100000 - start  # each value shown or counted
    finally:
        broker.stop()


def test_metrics_endpoint_counts_match_the_run(tmp_path, cli_env):
    (tmp_path / "w" / "src").mkdir(parents=True)
    (tmp_path / "w" / "component.yml").write_text("name: w\nworker: {input_type: Int64, output_type: Int64}\n")
    (tmp_path / "w" / "src" / "main.py").write_text(
        textwrap.dedent("""
        from pipelogic.worker import run

        def f(x):
            if x % 100 == 7:
                raise ValueError("skip me")
            return x

        run(f)
    """)
    )
    f = write(
        tmp_path,
        """
        name: counted
        components:
          n: {source: sequence, count: 1000}
          w: {path: ./w, on_error: skip}
          out: {sink: jsonl, path: ./out.jsonl}
        connections: [n -> w, w -> out]
    """,
    )
    port = free_port()
    broker = BrokerProc(f, cli_env, "--serve-forever", "--metrics", f"127.0.0.1:{port}")
    worker = start_worker(tmp_path / "w", "w", broker.endpoint, cli_env)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        done = ("pipelogic_pipeline_state", (("pipeline", "counted"), ("state", "done")))
        wait_until(lambda: scrape(url).get(done) == 1.0, 60, "the metrics to say done")
        time.sleep(0.6)  # one more publication after the end
        m = scrape(url)

        def v(name: str, vertex: str, **extra: str) -> float:
            labels = {
                "pipeline": "counted",
                "vertex": vertex,
                "kind": {"n": "source:sequence", "w": "component", "out": "sink:jsonl"}[vertex],
                **extra,
            }
            return m[(name, tuple(sorted(labels.items())))]

        assert m[("pipelogic_pipeline_state", (("pipeline", "counted"), ("state", "done")))] == 1.0
        assert v("pipelogic_vertex_ticks_total", "n") == 1000
        assert v("pipelogic_vertex_ticks_total", "w") == 1000
        assert v("pipelogic_vertex_ticks_total", "out") == 990
        assert v("pipelogic_vertex_errors_total", "w") == 10
        assert v("pipelogic_vertex_lost_total", "w", reason="dead_lettered") == 10
        assert v("pipelogic_input_queue_depth", "w", input="0") == 0
        assert m[("pipelogic_stream_messages_total", (("pipeline", "counted"), ("stream", "w.0")))] == 990
        assert m[("pipelogic_stream_messages_total", (("pipeline", "counted"), ("stream", "n.0")))] == 1000
        assert v("pipelogic_vertex_restarts_total", "w") == 0
        assert len((tmp_path / "out.jsonl").read_text().split()) == 990
        # Bytes: each Int64 came packed (1 to 9 bytes), none is left queued.
        assert 1000 <= v("pipelogic_input_bytes_total", "w", input="0") <= 9000
        assert v("pipelogic_input_queue_bytes", "w", input="0") == 0
        # Tick times: a histogram whose +Inf bucket holds every timed tick.
        timed = v("pipelogic_vertex_tick_seconds_count", "w")
        assert 0 < timed <= 1000 and v("pipelogic_vertex_tick_seconds_bucket", "w", le="+Inf") == timed
        assert v("pipelogic_vertex_tick_seconds_bucket", "w", le="10.0") == timed  # no tick took 10 s
        # End to end, sampled: a message of the source marked every 0.1 s (at least the first).
        seen = v("pipelogic_sink_latency_seconds_count", "out")
        assert seen >= 1 and v("pipelogic_sink_latency_seconds_bucket", "out", le="+Inf") == seen
    finally:
        worker.kill()
        worker.wait(10)
        broker.stop()
    assert any("metrics at http://127.0.0.1:" in line for line in broker.lines)


def test_the_metrics_of_a_finished_run_stay_until_a_scrape_has_seen_them(tmp_path, cli_env):
    f = write(
        tmp_path,
        "name: m\ncomponents:\n  n: {source: sequence, count: 50}\n  o: {sink: jsonl, path: ./o.jsonl}\n"
        "connections: [n -> o]\n",
    )
    port = free_port()
    env = dict(cli_env, PIPELOGIC_METRICS_LINGER_S="600")
    broker = BrokerProc(f, env, "--metrics", f"127.0.0.1:{port}")  # exits when done
    try:
        wait_until(lambda: any("until scraped" in line for line in broker.lines), 60, "the run to end")
        assert broker.proc.poll() is None  # done, and still serving its final state
        m = scrape(f"http://127.0.0.1:{port}/metrics")
        assert m[("pipelogic_pipeline_state", (("pipeline", "m"), ("state", "done")))] == 1.0
        assert broker.proc.wait(30) == 0  # seen: it goes, long before the 600 s
    finally:
        broker.stop()


def test_metrics_port_in_use_is_a_clear_start_failure(tmp_path, cli_env):
    f = write(
        tmp_path, "name: m\ncomponents:\n  n: {source: sequence, count: 1}\n  o: {sink: null}\nconnections: [n -> o]\n"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [PY, "-m", "backend_stub", str(f), "--listen", "tcp://127.0.0.1:0", "--metrics", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            env=cli_env,
            timeout=60,
        )
    assert r.returncode == 5 and f"cannot serve metrics on 127.0.0.1:{port}" in r.stderr


def test_the_standalone_broker_leaves_stdout_to_a_stdout_sink_and_stops_cleanly(tmp_path, cli_env):
    f = write(
        tmp_path,
        """
        name: s
        components:
          n: {source: values, type: String, values: [a, b, c]}
          o: {sink: stdout}
        connections: [n -> o]
    """,
    )
    r = subprocess.run(
        [PY, "-m", "pipelogic", "broker", str(f), "--listen", "tcp://127.0.0.1:0", "--log-level", "debug"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == 'o: "a"\no: "b"\no: "c"\n', r.stdout  # the sink's lines and nothing else
    assert "PIPELOGIC_BROKER=tcp://127.0.0.1:" in r.stderr
    # Not on a terminal: log lines are stamped. The last word is the table `up` prints.
    lines = r.stderr.splitlines()
    table = lines.index("pipeline s: done")
    assert lines[table + 1].startswith("vertex  kind"), lines[table:]
    stamped = [x for x in lines[:table] if not x.startswith("PIPELOGIC_")]
    assert stamped and all(x[:4].isdigit() and x[4] == "-" for x in stamped), stamped
    assert all(x[:4].isdigit() for x in lines[table + 2 + 2 :]), lines  # log lines after the table (n, o: 2 rows)
    # A SIGTERM stops it gracefully with exit 0.
    f2 = write(
        tmp_path,
        "name: t\ncomponents:\n  n: {source: sequence, count: 1000000, rate: 10}\n  o: {sink: null}\n"
        "connections: [n -> o]\n",
    )
    b = BrokerProc(f2, cli_env)
    assert b.stop() == 0
    assert any("stopped by SIGTERM before the pipeline finished" in x for x in b.lines)


def test_log_level_quiets_up_and_its_children(tmp_path, cli_env):
    r = run_up(
        tmp_path,
        f"""
        name: quiet
        components:
          n: {{source: sequence, count: 10}}
          d: {{path: {DOUBLE}}}
          o: {{sink: null}}
        connections: [n -> d, d -> o]
    """,
        cli_env,
    )
    assert r.returncode == 0 and "connected (pid" in r.stdout + r.stderr
    r = subprocess.run(
        [
            PY,
            "-m",
            "pipelogic",
            "--log-level",
            "warning",
            "up",
            str(tmp_path / "pipeline.yml"),
            "--listen",
            "tcp://127.0.0.1:0",
            "--fresh",
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert r.returncode == 0 and "connected (pid" not in r.stdout + r.stderr, r.stdout + r.stderr
