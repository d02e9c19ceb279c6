"""The rounds, the medians and the table (``python -m pipebench`` or ``scripts/bench``)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import zmq

from . import ROOT, USAGE
from .baselines import raw, shaped
from .cases import (
    compose_case,
    frames_case,
    graph_case,
    latency_case,
    pct,
    replicas_case,
    stateful_case,
    ui_case,
)
from .components import make_components
from .containers import compose_setup
from .dora import DORA_FAILED, DORA_LOST, dora_run, dora_setup
from .ours import ours, stalled_memory
from .rayrun import RAY_FAILED, ray_run, ray_setup


def main() -> int:
    ap = argparse.ArgumentParser(description=(USAGE or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=20000, help="small messages per case and round")
    ap.add_argument("--frames", type=int, default=300, help="1080p frames per round")
    ap.add_argument(
        "--replica-n", type=int, default=500, help="messages per instance for the replicas case (10 ms each; 0: skip)"
    )
    ap.add_argument("--stall-s", type=float, default=60.0, help="how long the consumer stalls (0: skip)")
    ap.add_argument(
        "--latency-frames", type=int, default=40, help="720p frames per run of the latency case (0.3 s each)"
    )
    ap.add_argument(
        "--with-dora",
        action="store_true",
        help="also run dora-rs (installed into build/dora-venv from PyPI on first use)",
    )
    ap.add_argument(
        "--with-ray",
        action="store_true",
        help="also run Ray, through an actor (installed into build/ray-venv from PyPI on first use)",
    )
    ap.add_argument(
        "--cases",
        default="small,frames,stateful,replicas,graph,latency,ui,memory",
        help="which cases to run (comma-separated; default all but compose, which needs a Docker engine "
        "and builds the runtime image on first use)",
    )
    ap.add_argument("-o", "--output", default=str(ROOT / "build" / "bench.md"))
    args = ap.parse_args()
    cases = set(args.cases.split(","))
    unknown = cases - {"small", "frames", "stateful", "replicas", "graph", "latency", "ui", "memory", "compose"}
    if unknown:
        ap.error(
            f"--cases: unknown case(s) {', '.join(sorted(unknown))}; "
            "expected some of small, frames, stateful, replicas, graph, latency, ui, memory, compose"
        )
    if cases & {"frames", "latency", "compose"}:
        try:
            import numpy  # noqa: F401  # the frames case's components and baselines use it
        except ImportError:
            ap.error(
                "the frames and latency cases need numpy: pip install -e '.[test]' (or numpy), or leave "
                "them out with --cases small,stateful,replicas,graph,memory"
            )
    dora = dora_setup(ROOT / "build" / "dora-venv") if args.with_dora else None
    ray = ray_setup(ROOT / "build" / "ray-venv") if args.with_ray else None
    if "compose" in cases and compose_setup() is None:
        cases.discard("compose")
    rows: dict[str, dict[str, list[float]]] = {}

    labels: dict[str, tuple[str, str]] = {}  # row -> (what its baseline is, its unit) where not raw

    def note(name: str, base: str = "raw", unit: str = "/s", **kv: float) -> None:
        labels[name] = (base, unit)
        row = rows.setdefault(name, {})
        for k, v in kv.items():
            row.setdefault(k, []).append(v)

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        comps = make_components(base)
        small_n1 = max(2000, args.n // 5)
        for r in range(args.rounds):
            small = [
                ("small, 1 in flight", 1, 1, 1),
                ("small, 16 in flight", 16, 16, 1),
                ("small, 256 in flight (defaults)", 256, 256, 64),
            ]
            for label, inflight, credit, batch in small if "small" in cases else []:
                n = small_n1 if inflight == 1 else args.n
                base_rate, rtts = raw(n, inflight)
                mine, gaps = ours(base, comps, n, credit, batch, stamps=inflight == 1)
                note(label, raw=base_rate, ours=mine, ratio=mine / base_rate)
                if inflight == 1:
                    rp50, op50 = statistics.median(rtts[n // 10 :]), statistics.median(gaps)
                    note(
                        "latency, 1 in flight",
                        raw=rp50 * 1e6,
                        ours=op50 * 1e6,
                        ratio=op50 / rp50,
                        raw99=pct(rtts[n // 10 :], 0.99) * 1e6,
                        ours99=pct(gaps, 0.99) * 1e6,
                    )
                print(
                    f"round {r + 1}: {label}: raw {base_rate:,.0f}/s, ours {mine:,.0f}/s ({mine / base_rate:.2f}x)",
                    flush=True,
                )
                if inflight in (1, 16):  # the ceiling of this message shape, and ours against it
                    ceil, crtts = shaped(n, inflight)
                    if inflight == 1:
                        cp50 = statistics.median(crtts[n // 10 :])
                        note(
                            f"ceiling: {label}, latency p50",
                            base="raw round trip",
                            raw=rp50 * 1e6,
                            ours=cp50 * 1e6,
                            ratio=cp50 / rp50,
                            unit="µs",
                        )
                        note(
                            f"{label}, latency p50: ours against the ceiling",
                            base="ceiling",
                            raw=cp50 * 1e6,
                            ours=op50 * 1e6,
                            ratio=op50 / cp50,
                            unit="µs",
                        )
                    else:
                        note(f"ceiling: {label}", raw=base_rate, ours=ceil, ratio=ceil / base_rate)
                        note(
                            f"{label}: ours against the ceiling", base="ceiling", raw=ceil, ours=mine, ratio=mine / ceil
                        )
                    print(
                        f"round {r + 1}: {label}: raw in our message shape {ceil:,.0f}/s "
                        f"({ceil / base_rate:.2f}x raw; ours {mine / ceil:.2f}x of it)",
                        flush=True,
                    )
                if ray is not None and inflight in (1, 16) and (got := ray_run(ray, base, n, inflight)) is not None:
                    theirs, _ = got
                    note(f"Ray: {label}", raw=base_rate, ours=theirs, ratio=theirs / base_rate)
                    print(f"round {r + 1}: Ray {label}: {theirs:,.0f}/s ({theirs / base_rate:.2f}x raw)", flush=True)
                if dora is not None and (got := dora_run(dora, base, n, inflight)) is not None:
                    theirs, drtts = got
                    note(f"dora-rs: {label}", raw=base_rate, ours=theirs, ratio=theirs / base_rate)
                    if inflight == 1:
                        dp50 = statistics.median(drtts)
                        note(
                            "dora-rs: latency, 1 in flight",
                            raw=rp50 * 1e6,
                            ours=dp50 * 1e6,
                            ratio=dp50 / rp50,
                            raw99=pct(rtts[n // 10 :], 0.99) * 1e6,
                            ours99=pct(drtts, 0.99) * 1e6,
                        )
                    print(
                        f"round {r + 1}: dora-rs {label}: {theirs:,.0f}/s ({theirs / base_rate:.2f}x raw)", flush=True
                    )
            if "frames" in cases:
                frames_case(base, comps, args.frames, r, note, dora, ray)
            if "stateful" in cases:
                stateful_case(base, comps, args.n, r, note)
            if args.replica_n > 0 and "replicas" in cases:
                replicas_case(base, comps, args.replica_n, r, note)
            if "graph" in cases:
                graph_case(base, comps, args.n, r, note)
            if "latency" in cases:
                latency_case(base, comps, args.latency_frames, r, note)
            if "ui" in cases:
                ui_case(base, comps, args.n, r, note)
            if "compose" in cases:
                compose_case(base, comps, args.frames, r, note)
        mem = stalled_memory(base, comps, args.stall_s) if args.stall_s > 0 and "memory" in cases else None

    med = {name: {k: statistics.median(v) for k, v in row.items()} for name, row in rows.items()}
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({os.uname().machine}), Python "
        f"{sys.version.split()[0]}, pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()}), {args.rounds} alternating "
        f"rounds, medians; ratios are medians of per-round ratios.",
        "",
        "| work | baseline | measured (ours, or the peer the row names) | measured / baseline |",
        "| --- | --- | --- | --- |",
    ]
    for name, m in med.items():
        baseline, unit = labels[name]
        if unit == "s":
            lines.append(
                f"| {name}: push to sink p50 (p95) | {baseline} {m['raw']:.2f} s | "
                f"{m['ours']:.2f} s ({m['ours95']:.2f} s) | {m['ratio']:.2f} |"
            )
        elif unit == "µs":
            lines.append(f"| {name} | {baseline} {m['raw']:.0f} µs | {m['ours']:.0f} µs | {m['ratio']:.2f} |")
        elif "latency" in name:
            lines.append(
                f"| {name}: p50 (p99) | raw round trip {m['raw']:.0f} µs ({m['raw99']:.0f} µs) | "
                f"{m['ours']:.0f} µs ({m['ours99']:.0f} µs) | {m['ratio']:.2f} |"
            )
        elif name.startswith("graph:"):
            lines.append(
                f"| {name}: items/s, broker CPU per item and stage | 1 stage {m['raw']:,.0f}/s, {m['raw_us']:.1f} µs | "
                f"{m['ours']:,.0f}/s, {m['ours_us']:.1f} µs | {m['ratio']:.2f} |"
            )
        elif name.startswith("replicas"):
            lines.append(f"| {name} | 1 instance {m['raw']:,.1f}/s | {m['ours']:,.1f}/s | {m['ratio']:.2f} |")
        elif name.startswith("stateful"):
            lines.append(f"| {name} | stateless {m['raw']:,.0f}/s | {m['ours']:,.0f}/s | {m['ratio']:.2f} |")
        else:
            fmt = "{:,.1f}/s" if "frames" in name else "{:,.0f}/s"
            lines.append(f"| {name} | {baseline} {fmt.format(m['raw'])} | {fmt.format(m['ours'])} | {m['ratio']:.2f} |")
    if mem is not None:
        lines.append(
            f"| broker RSS, a consumer of 1.3 MB values stalled {args.stall_s:g} s | idle {mem['idle']:.0f} MB | "
            f"{mem['after10']:.0f} MB after 10 s, {mem['end']:.0f} MB at the end, max {mem['max']:.0f} MB | - |"
        )
    if DORA_LOST:
        lines += [
            "",
            f"dora-rs lost messages (its client notices a loss after a second without input, sends on, and "
            f"its rate leaves those seconds out): {'; '.join(DORA_LOST)}.",
        ]
    if DORA_FAILED:
        lines += ["", f"dora-rs runs left out: {'; '.join(DORA_FAILED)}."]
    if RAY_FAILED:
        lines += ["", f"Ray runs left out: {'; '.join(RAY_FAILED)}."]
    table = "\n".join(lines)
    print("\n" + table)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
