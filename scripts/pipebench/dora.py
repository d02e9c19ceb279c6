"""dora-rs running the same loops, in its own virtualenv."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import textwrap
from pathlib import Path

from .peervenv import peer_venv

# -- dora-rs, the same loops -------------------------------------------------------------------

DORA_CLIENT = """
import json, os, time
import numpy as np
import pyarrow as pa
from dora import Node

N, K, FRAMES = int(os.environ["N"]), int(os.environ["K"]), os.environ.get("FRAMES") == "1"
node = Node()
frame = np.full(1080 * 1920 * 3, 1, np.uint8) if FRAMES else None
sent = got = lost = 0
t0 = t1 = 0.0
stalled = 0.0  # time spent noticing lost messages: left out of the rate, to its favour
sends, rtts = {}, []

def send(i):
    sends[i] = time.perf_counter()
    node.send_output("x", pa.array(frame) if FRAMES else pa.array([i], type=pa.int64()), {"i": i})

while sent < min(K, N):
    send(sent)
    sent += 1
while got + lost < N:
    event = node.next(timeout=1.0)
    if event is None or event["type"] != "INPUT":
        if event is not None and event["type"] == "STOP":
            break
        # Nothing for a second with messages in flight: they were lost (dora-rs drops
        # messages here at 16 and more in flight). Count them and keep K in flight.
        stalled += 1.0
        lost += len(sends)
        sends.clear()
        while sent < N and len(sends) < K:
            send(sent)
            sent += 1
        continue
    now = time.perf_counter()
    start = sends.pop(event["metadata"]["i"], None)
    if start is None:
        continue  # counted as lost already
    rtts.append(now - start)
    got += 1
    if got == N // 10:
        t0, stalled = now, 0.0
    t1 = now
    if sent < N:
        send(sent)
        sent += 1
with open(os.environ["RESULT"], "w") as f:
    json.dump({"rate": (got - N // 10) / (t1 - t0 - stalled), "rtts": rtts[N // 10:], "got": got, "lost": lost}, f)
"""

DORA_DOUBLE = """
import pyarrow as pa
from dora import Node

node = Node()
for event in node:
    if event["type"] == "INPUT":
        node.send_output("y", pa.array(event["value"].to_numpy(zero_copy_only=False) * 2), event["metadata"])
    elif event["type"] == "STOP":
        break
"""


def dora_setup(venv: Path) -> Path | None:
    """A virtualenv with dora-rs and its CLI (made once); None, with a message, if it cannot be."""
    dora = venv / "bin" / "dora"
    if dora.exists():
        return venv
    return peer_venv(venv, "--with-dora", ["dora-rs", "dora-rs-cli", "numpy", "pyarrow"], 600)


DORA_FAILED: list[str] = []  # dora-rs runs that did not finish: left out of the table, named under it
DORA_LOST: list[str] = []  # messages dora-rs lost (its rate leaves out the second each loss took to notice)
DORA_TIMEOUT_S = 120


def dora_run(venv: Path, base: Path, n: int, inflight: int, frames: bool = False) -> tuple[float, list[float]] | None:
    """(messages per second, round trips) of the loop as two dora-rs Python nodes; None
    (noted in DORA_FAILED, with the end of its log printed) if the run did not finish in
    DORA_TIMEOUT_S or left no result: a hang of theirs must not end our benchmark."""
    import json

    with tempfile.TemporaryDirectory(dir=base) as tmp:
        d = Path(tmp)
        (d / "client.py").write_text(DORA_CLIENT)
        (d / "double.py").write_text(DORA_DOUBLE)
        (d / "dataflow.yml").write_text(
            textwrap.dedent(f"""\
            nodes:
              - id: client
                path: client.py
                inputs: {{y: {{source: double/y, queue_size: {max(inflight, 1) * 4}}}}}
                outputs: [x]
                env: {{N: "{n}", K: "{inflight}", FRAMES: "{int(frames)}", RESULT: "{d / "result.json"}"}}
              - id: double
                path: double.py
                inputs: {{x: {{source: client/x, queue_size: {max(inflight, 1) * 4}}}}}
                outputs: [y]
            """)
        )
        env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(venv))
        env.pop("PYTHONPATH", None)
        what = f"{'1080p frames' if frames else 'small'}, {inflight} in flight"
        with open(d / "dora.log", "w") as logf:
            # Its own session, so a hung run's node processes go with it.
            proc = subprocess.Popen(
                [str(venv / "bin" / "dora"), "run", "dataflow.yml"],
                cwd=d,
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                proc.wait(DORA_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                DORA_FAILED.append(f"{what}: no end within {DORA_TIMEOUT_S} s")
                print(
                    f"dora-rs ({what}) did not finish within {DORA_TIMEOUT_S} s; left out. Its log ends:\n"
                    f"{(d / 'dora.log').read_text()[-1500:]}",
                    flush=True,
                )
                return None
        try:
            res = json.loads((d / "result.json").read_text())
        except (OSError, ValueError) as exc:
            DORA_FAILED.append(f"{what}: no result ({exc})")
            print(
                f"dora-rs ({what}) left no result ({exc}); left out. Its log ends:\n"
                f"{(d / 'dora.log').read_text()[-1500:]}",
                flush=True,
            )
            return None
        if res.get("lost"):
            DORA_LOST.append(f"{what}: {res['lost']} of {n}")
            print(f"dora-rs ({what}) lost {res['lost']} of {n} messages", flush=True)
        return float(res["rate"]), list(res["rtts"])
