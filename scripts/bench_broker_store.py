"""What the broker's recovery store costs: throughput with the store against the in-memory
broker, for the same work, in alternating rounds of the same run (read the ratios).

source (sequence) -> one worker process (x + 1) -> sink, under pipelogic.testing.run_pipeline
(in-process broker, real worker process, tcp loopback, start-up included).
Usage: python scripts/bench_broker_store.py [N] [ROUNDS]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_snapshots import STATEFUL, STATELESS, component

from pipelogic.pipeline import parse_pipeline
from pipelogic.testing import run_pipeline


def rate(base: Path, comp: Path, n: int, sink: dict, snapshot: str | None, durable: bool) -> float:
    spec = {"path": str(comp), **({"snapshot": snapshot} if snapshot else {})}
    p = parse_pipeline(
        {
            "name": "bench",
            "components": {"src": {"source": "sequence", "count": n}, "w": spec, "out": sink},
            "connections": ["src -> w", "w -> out"],
        },
        base / "pipeline.yml",
    )
    state = base / "state"
    shutil.rmtree(state, ignore_errors=True)
    t0 = time.perf_counter()
    run_pipeline(p, state_dir=state, timeout_s=600, durable_broker=durable)
    return n / (time.perf_counter() - t0)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        stateless, stateful = component(base, "inc", STATELESS), component(base, "acc", STATEFUL)
        cases = [
            ("stateless worker, null sink", stateless, {"sink": "null"}, None),
            ("stateless worker, jsonl sink", stateless, {"sink": "jsonl", "path": "out.jsonl"}, None),
            (
                "stateful worker (snapshot every 1 s), jsonl sink",
                stateful,
                {"sink": "jsonl", "path": "out.jsonl"},
                "1 s",
            ),
        ]
        print("| work | in memory msg/s | with store msg/s | store / in memory |\n| --- | --- | --- | --- |")
        for label, comp, sink, snapshot in cases:
            mem, durable = [], []
            for _ in range(rounds):  # alternate, so drifts of the machine's speed hit both
                mem.append(rate(base, comp, n, sink, snapshot, False))
                durable.append(rate(base, comp, n, sink, snapshot, True))
            ratios = [d / m for d, m in zip(durable, mem)]
            print(
                f"| {label} | {statistics.median(mem):,.0f} | {statistics.median(durable):,.0f} | "
                f"{statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
