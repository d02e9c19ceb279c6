"""Throughput of each snapshot policy relative to a stateless run of the same work, measured
in the same run (timings on shared machines are noisy: read the ratios, not the rates).

source (sequence) -> one worker process -> null sink. The stateless worker returns x + 1;
the stateful one also adds x to its state. Usage: python scripts/bench_snapshots.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
import time
from pathlib import Path

from pipelogic.pipeline import parse_pipeline
from pipelogic.testing import run_pipeline

STATELESS = """
from pipelogic.worker import run
run(lambda x: x + 1)
"""
STATEFUL = """
from pipelogic.worker import run
def f(x, state):
    return {"output": x + 1, "state": state + x}
run(f, initial_state=0)
"""


def component(base: Path, name: str, main: str) -> Path:
    d = base / name
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text(f"name: {name}\nworker: {{input_type: Int64, output_type: Int64}}\n")
    (d / "src" / "main.py").write_text(textwrap.dedent(main))
    return d


def rate(base: Path, comp: Path, n: int, snapshot: str | None) -> float:
    spec = {"path": str(comp), **({"snapshot": snapshot} if snapshot else {})}
    p = parse_pipeline(
        {
            "name": "bench",
            "components": {"src": {"source": "sequence", "count": n}, "w": spec, "out": {"sink": "null"}},
            "connections": ["src -> w", "w -> out"],
        },
        base / "pipeline.yml",
    )
    t0 = time.perf_counter()
    run_pipeline(p, state_dir=base / "state", timeout_s=600)
    return n / (time.perf_counter() - t0)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        stateless, stateful = component(base, "inc", STATELESS), component(base, "acc", STATEFUL)
        cases = [
            ("stateless", stateless, None, n),
            ("stateful, snapshot off (stop only)", stateful, "off", n),
            ("stateful, every 1 s", stateful, "1 s", n),
            ("stateful, every 1000 ticks", stateful, "1000 ticks", n),
            ("stateful, every 100 ticks", stateful, "100 ticks", n),
            ("stateful, every 10 ticks", stateful, "10 ticks", n // 5),
            ("stateful, every tick", stateful, "tick", n // 25),
        ]
        base_rate = None
        print("| policy | messages | msg/s | relative to stateless |\n| --- | --- | --- | --- |")
        for label, comp, policy, count in cases:
            r = rate(base, comp, count, policy)
            base_rate = base_rate or r
            print(f"| {label} | {count} | {r:,.0f} | {r / base_rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
