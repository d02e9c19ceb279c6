"""Ray running the same loops through an actor, in its own virtualenv (``--with-ray``)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from .peervenv import peer_venv

# The same loop as the raw baseline and dora-rs: K calls in flight to an actor returning
# x * 2 (a small integer, or a 1080p uint8 frame, which Ray passes through its object store).
RAY_CLIENT = """
import json, os, time
import numpy as np
import ray

N, K, FRAMES = int(os.environ["N"]), int(os.environ["K"]), os.environ.get("FRAMES") == "1"
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")


@ray.remote
class Double:
    def f(self, x):
        return x * 2


actor = Double.remote()
pool = [np.full((1080, 1920, 3), i, np.uint8) for i in range(4)] if FRAMES else None
ray.get(actor.f.remote(pool[0] if FRAMES else 0))  # started, and warm
sent = got = 0
t0 = t1 = 0.0
started, rtts = {}, []


def send(i):
    ref = actor.f.remote(pool[i % 4] if FRAMES else i)
    started[ref] = time.perf_counter()


while sent < min(K, N):
    send(sent)
    sent += 1
while got < N:
    ready, _ = ray.wait(list(started), num_returns=1)
    for ref in ready:
        ray.get(ref)
        now = time.perf_counter()
        rtts.append(now - started.pop(ref))
        got += 1
        if got == N // 10:
            t0 = now
        t1 = now
        if sent < N:
            send(sent)
            sent += 1
with open(os.environ["RESULT"], "w") as f:
    json.dump({"rate": (got - N // 10) / (t1 - t0), "rtts": rtts[N // 10:]}, f)
ray.shutdown()
"""

RAY_FAILED: list[str] = []  # Ray runs that did not finish: left out of the table, named under it
RAY_TIMEOUT_S = 300


def ray_setup(venv: Path) -> Path | None:
    """A virtualenv with Ray and numpy (made once); None, with a message, if it cannot be."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import ray"], capture_output=True).returncode == 0:
        return venv
    return peer_venv(venv, "--with-ray", ["ray", "numpy"], 900)


def ray_run(venv: Path, base: Path, n: int, inflight: int, frames: bool = False) -> tuple[float, list[float]] | None:
    """(calls per second, round trips) of the loop through a Ray actor; None (noted in
    RAY_FAILED, with the end of its output printed) if it did not finish in RAY_TIMEOUT_S."""
    what = f"{'1080p frames' if frames else 'small'}, {inflight} in flight"
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        d = Path(tmp)
        (d / "client.py").write_text(RAY_CLIENT)
        env = dict(os.environ, N=str(n), K=str(inflight), FRAMES=str(int(frames)), RESULT=str(d / "result.json"))
        env.pop("PYTHONPATH", None)
        env["RAY_DEDUP_LOGS"] = "0"
        try:
            done = subprocess.run(
                [str(venv / "bin" / "python"), "client.py"],
                cwd=d,
                env=env,
                capture_output=True,
                text=True,
                timeout=RAY_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            RAY_FAILED.append(f"{what}: no end within {RAY_TIMEOUT_S} s")
            subprocess.run([str(venv / "bin" / "ray"), "stop", "--force"], capture_output=True, timeout=60)
            return None
        try:
            res = json.loads((d / "result.json").read_text())
        except (OSError, ValueError) as exc:
            RAY_FAILED.append(f"{what}: no result ({exc})")
            print(f"Ray ({what}) left no result; its output ends:\n{(done.stdout + done.stderr)[-1500:]}", flush=True)
            return None
        return float(res["rate"]), list(res["rtts"])
