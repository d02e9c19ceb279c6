"""What the broker's recovery store costs: throughput with the store against the in-memory
broker, for the same work, in alternating rounds of the same run (read the ratios).

source -> one worker process (x + 1) -> sink, under pipelogic.testing.run_pipeline
(in-process broker, real worker processes, tcp loopback, start-up included). The source is
the built-in ``sequence`` (whose messages the store does not keep: a restart makes them
again), or a component counting through ``virtual_in`` (whose messages it keeps while they
are in flight), the case of a camera.
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

COUNTER = """
import threading
from pipelogic.worker import config, run, virtual_in
def count():
    for i in range(int(config.n)):
        virtual_in.push(i, blocking=True)
    virtual_in.close()
threading.Thread(target=count, daemon=True).start()
run(lambda virtual_input: virtual_input[0])
"""


def counter(base: Path) -> Path:
    d = base / "counter"
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text(
        "name: counter\nworker:\n  output_type: Int64\n  config_schema:\n    n: {type: Int64, default: 0}\n"
    )
    (d / "src" / "main.py").write_text(COUNTER)
    return d


def rate(
    base: Path, comp: Path, n: int, sink: dict, snapshot: str | None, durable: bool, source: Path | None = None
) -> float:
    spec = {"path": str(comp), **({"snapshot": snapshot} if snapshot else {})}
    src = {"source": "sequence", "count": n} if source is None else {"path": str(source), "config": {"n": n}}
    p = parse_pipeline(
        {
            "name": "bench",
            "components": {"src": src, "w": spec, "out": sink},
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
        source = counter(base)
        jsonl = {"sink": "jsonl", "path": "out.jsonl"}
        cases = [
            ("stateless worker, null sink", stateless, {"sink": "null"}, None, None),
            ("stateless worker, jsonl sink", stateless, jsonl, None, None),
            ("stateful worker (snapshot every 1 s), jsonl sink", stateful, jsonl, "1 s", None),
            ("a component source, stateless worker, jsonl sink", stateless, jsonl, None, source),
            ("a component source, stateful worker (1 s), jsonl sink", stateful, jsonl, "1 s", source),
        ]
        print("| work | in memory msg/s | with store msg/s | store / in memory |\n| --- | --- | --- | --- |")
        for label, comp, sink, snapshot, src in cases:
            mem, durable = [], []
            for _ in range(rounds):  # alternate, so drifts of the machine's speed hit both
                mem.append(rate(base, comp, n, sink, snapshot, False, src))
                durable.append(rate(base, comp, n, sink, snapshot, True, src))
            ratios = [d / m for d, m in zip(durable, mem)]
            print(
                f"| {label} | {statistics.median(mem):,.0f} | {statistics.median(durable):,.0f} | "
                f"{statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
