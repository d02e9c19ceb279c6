"""Shared by the recovery tests: the chaos components' reference folds, and `pipelogic up`
run as a process whose broker endpoint and output the test can read."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.helpers import up_args

COMPONENTS = Path(__file__).parent / "chaos"


def load_logic(name: str) -> ModuleType:
    """The pure logic module of a chaos component (the same file its worker runs)."""
    spec = importlib.util.spec_from_file_location(f"chaos_{name}_logic", COMPONENTS / name / "src" / "logic.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def spread(x: int) -> int:
    """The replicated sleeper's function (``tests/integration/chaos/sleeper``)."""
    return 3 * x + 1


def fold_counter(n: int, inputs: list[int] | None = None) -> tuple[list[int], dict]:
    """The counter's crash-free outputs and final state over ``inputs`` (0..n-1 if None)."""
    counter = load_logic("counter")
    state = copy.deepcopy(counter.INITIAL)
    outs = []
    for x in range(n) if inputs is None else inputs:
        out, state = counter.step(x, state)
        outs.append(out)
    return outs, state


def fold_pipeline(n: int) -> tuple[list[int], dict, dict]:
    """spread -> counter -> accumulator, crash-free: (sink outputs, counter state,
    accumulator state)."""
    mid, cstate = fold_counter(n, [spread(x) for x in range(n)])
    acc = load_logic("accumulator")
    astate = copy.deepcopy(acc.INITIAL)
    outs, i = [], 0
    while i + acc.window(astate) <= len(mid):
        k = acc.window(astate)
        produced, astate = acc.step(mid[i : i + k], astate)
        outs.extend(produced)
        i += k
    return outs, cstate, astate


@dataclass
class UpRun:
    proc: subprocess.Popen[str]
    endpoint: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)


@contextmanager
def up_process(pipeline: Path, env: dict[str, str], *flags: str) -> Iterator[UpRun]:
    """Start `pipelogic up` on a random port, wait for its broker endpoint, collect its
    output on a thread; on exit, reap the process (killed if still running)."""
    proc = subprocess.Popen(
        up_args(pipeline, *flags),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = UpRun(proc)
    reader = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            run.lines.append(line)
            if " broker at " in line:
                run.endpoint = line.split(" broker at ")[1].split(",")[0].strip()
                break
        assert run.endpoint, "pipelogic up did not report its broker:\n" + run.output
        out = proc.stdout
        assert out is not None
        reader = threading.Thread(target=lambda: run.lines.extend(out), daemon=True)
        reader.start()
        yield run
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if reader is not None:
            reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()


def chaos_pipeline(name: str, n: int, settings: dict, rate: int) -> dict:
    """The T1 pipeline: sequence -> stateless sleeper as 3 replicas -> stateful counter ->
    stateful streaming accumulator -> jsonl."""
    return {
        "name": name,
        "settings": settings,
        "components": {
            "numbers": {"source": "sequence", "count": n, "rate": rate},
            "spread": {"path": str(COMPONENTS / "sleeper"), "replicas": 3, "config": {"max_ms": 0.0}},
            "counter": {"path": str(COMPONENTS / "counter"), "snapshot": "300 ticks or 0.3 s"},
            "acc": {"path": str(COMPONENTS / "accumulator"), "snapshot": "100 ticks or 0.3 s"},
            "out": {"sink": "jsonl", "path": "out.jsonl"},
        },
        "connections": ["numbers -> spread", "spread -> counter", "counter -> acc", "acc -> out"],
    }


def final_states(state: Path) -> dict[str, Any]:
    """The counter's and the accumulator's newest snapshots (None where there is none)."""
    from pipelogic.state import SnapshotStore, unpack_state

    states = {}
    for name in ("counter", "acc"):
        snap = SnapshotStore(state / name, name).load()
        states[name] = unpack_state(snap.state) if snap is not None else None
    return states


def verdict(got: list[int], want: list[int]) -> str:
    """Kafka-style one-line verdict: ALL-RECORDS-DELIVERED or what went wrong."""
    if got == want:
        return "ALL-RECORDS-DELIVERED"
    g, w = Counter(got), Counter(want)
    missing = sum((w - g).values())
    extra = sum((g - w).values())
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return (
        f"missing={missing} unexpected-or-duplicate={extra} first-divergence-at={first} got={len(got)} want={len(want)}"
    )
