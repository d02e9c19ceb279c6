"""`scripts/bench` runs as docs/benchmarks.md says and writes its table: a short run of the
small-message, frame, graph, latency and web view cases, real broker and worker processes against their raw and
ceiling baselines. Only the table's shape is checked: timings are never asserted."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_run_writes_every_row_with_its_ratio(tmp_path, cli_env):
    pytest.importorskip("numpy")
    out = tmp_path / "bench.md"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench"),
            "--cases",
            "small,frames,graph,latency,ui",
            "--rounds",
            "1",
            "--n",
            "3000",
            "--frames",
            "10",
            "--latency-frames",
            "8",
            "-o",
            str(out),
        ],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in out.read_text().splitlines() if line.startswith("| ")}
    for name in (
        "small, 1 in flight",
        "latency, 1 in flight: p50 (p99)",
        "small, 16 in flight",
        "ceiling: small, 16 in flight",
        "small, 16 in flight: ours against the ceiling",
        "ceiling: small, 1 in flight, latency p50",
        "small, 256 in flight (defaults)",
        "1080p frames, 1 in flight, sockets",
        "1080p frames, 1 in flight, shared memory",
        "1080p frames, 1 in flight, shared memory, with the recovery store (as `up` runs it)",
        "1080p frames, 1 in flight, shared memory: with the store against in memory",
        "1080p frames, 1 in flight, sockets: ours against the ceiling",
        "graph: a chain of 8: items/s, broker CPU per item and stage",
        "graph: a fan-out to 4: items/s, broker CPU per item and stage",
        "frame latency behind a 0.2-0.4 s model, a camera pushing as fast as it may: push to sink p50 (p95)",
        "frame latency behind a 0.2-0.4 s model as 2 replicas, a camera pushing as fast as it may: push to sink p50 (p95)",
        "frame latency behind a 0.2-0.4 s model, a live 30 fps camera keeping the latest: push to sink p50 (p95)",
        "web view served, nobody watching: 16 in flight",
        "web view open on a tap: 256 in flight (defaults)",
    ):
        assert name in rows, f"no row {name!r} in:\n{out.read_text()}"
        ratio = rows[name].rstrip(" |").rsplit("| ", 1)[1]
        assert float(ratio) > 0, rows[name]


def test_unknown_cases_are_refused_before_anything_runs(tmp_path, cli_env):
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench"), "--cases", "smal"],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "unknown case(s) smal" in r.stderr
