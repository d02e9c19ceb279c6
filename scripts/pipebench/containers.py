"""The frames case through ``pipelogic compose``: the same camera and worker as the frames
case, each in a container of the runtime image, with the broker in a third (with its
recovery store, as the generated file runs it), keys on (the file's default).
``--shared-memory`` or not is what the case compares.

The rate is the broker's own, not taken around ``docker-compose up`` (whose start-up,
seconds, would drown it): the sink's mean rate while values moved, from the final status
the broker leaves on its state volume (``final.json``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

from . import ROOT

COMPOSE = "/usr/bin/docker-compose"


def compose_setup() -> str | None:
    """The runtime image (built offline, or found up to date); None, saying why, when
    there is no Docker engine or no image can be had."""
    if shutil.which("docker") is None or not Path(COMPOSE).exists():
        print(f"compose case: skipped (no docker or no {COMPOSE})", flush=True)
        return None
    from pipelogic.containers._images import build_runtime_image
    from pipelogic.errors import PipelogicError

    try:
        return build_runtime_image(offline=True, log=lambda _msg: None)
    except (PipelogicError, OSError) as exc:
        print(f"compose case: skipped (cannot build the runtime image: {exc})", flush=True)
        return None


def compose_frames(
    base: Path, comps: dict[str, Path], frames: int, shm: bool, loan: bool = False
) -> tuple[float, dict[str, Any]]:
    """Frames per second at the sink, one in flight, camera -> worker -> sink; and the
    broker's final status. ``loan``: the components that build their outputs in
    ``loan()`` buffers (the frames case's loan row)."""
    from pipelogic.containers._images import env_without_python

    d = base / f"compose-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    try:
        suffix = "_loan" if loan else ""
        shutil.copytree(comps["camera" + suffix], d / "camera")
        shutil.copytree(comps["frame_double" + suffix], d / "double")
        (d / "pipeline.yml").write_text(
            textwrap.dedent(f"""\
            name: bench
            settings: {{credit: 1, batch: 1}}
            components:
              cam:    {{path: ./camera, config: {{frames: {frames}}}}}
              double: {{path: ./double}}
              out:    {{sink: "null"}}
            connections: [cam -> double, double -> out]
            """)
        )
        flags = ["--shared-memory", "1g"] if shm else []
        subprocess.run(
            [sys.executable, "-m", "pipelogic", "compose", str(d / "pipeline.yml"), *flags],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        project = f"plbench{uuid.uuid4().hex[:8]}"
        cmd = [COMPOSE, "-p", project, "-f", str(d / "compose.yaml")]
        env = env_without_python()
        try:
            up = subprocess.run([*cmd, "up", "--no-color"], capture_output=True, text=True, env=env, cwd=d, timeout=600)
            broker = subprocess.run(
                [*cmd, "ps", "-q", "broker"], capture_output=True, text=True, env=env, cwd=d, check=True
            ).stdout.strip()
            got = subprocess.run(
                ["docker", "cp", f"{broker}:/state/final.json", str(d / "final.json")], capture_output=True, text=True
            )
            if got.returncode != 0:
                raise RuntimeError(f"compose frames run: no final status ({got.stderr.strip()})\n{up.stdout[-3000:]}")
        finally:
            subprocess.run([*cmd, "down", "-v", "--remove-orphans"], capture_output=True, env=env, cwd=d, timeout=300)
        final = json.loads((d / "final.json").read_text())
        [sink] = [v for v in final["vertices"] if v["name"] == "out"]
        if sink["ticks"] != frames or not sink.get("rate"):
            raise RuntimeError(f"compose frames run: the sink took {sink['ticks']} of {frames} frames ({sink})")
        return float(sink["rate"]), final
    finally:
        shutil.rmtree(d, ignore_errors=True)
