"""Helpers for the container tests: compose projects, waiting, the example copies and the
chaos counter's reference fold."""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelogic.containers._images import env_without_python
from tests.helpers import wait_until

PREFIX = "pltest"
COMPOSE = "/usr/bin/docker-compose"
ROOT = Path(__file__).resolve().parents[2]
CHAOS = ROOT / "tests" / "integration" / "chaos"


def compose_cmd(
    project: str, file: Path, *args: str, check: bool = True, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    """The system docker-compose (never our venv's Python: it breaks with docker>=7)."""
    proc = subprocess.run(
        [COMPOSE, "-p", project, "-f", str(file), *args],
        capture_output=True,
        text=True,
        env=env_without_python(),
        cwd=file.parent,
        timeout=timeout_s,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


class Project:
    """One compose project under a unique name; ``down -v`` at the end, always."""

    def __init__(self, engine: Any, file: Path) -> None:
        self.engine = engine
        self.file = file
        self.name = f"{PREFIX}{uuid.uuid4().hex[:8]}"

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return compose_cmd(self.name, self.file, *args, check=check)

    def containers(self, service: str) -> list[Any]:
        return self.engine.containers.list(
            all=True,
            ignore_removed=True,
            filters={"label": [f"com.docker.compose.project={self.name}", f"com.docker.compose.service={service}"]},
        )

    def container(self, service: str) -> Any:
        found = self.containers(service)
        assert len(found) == 1, f"expected one {service} container, found {len(found)}"
        return found[0]

    def logs(self, service: str) -> str:
        return "".join(c.logs().decode("utf-8", "replace") for c in self.containers(service))

    def wait_exit(self, service: str, timeout_s: float = 180) -> int:
        """Wait until the service's container has exited; its exit code."""
        c = wait_for(lambda: self._exited(service), timeout_s, f"{service} to exit", lambda: self.logs(service))
        return int(c.attrs["State"]["ExitCode"])

    def _exited(self, service: str) -> Any | None:
        found = self.containers(service)
        if not found:
            return None
        c = found[0]
        c.reload()
        return c if c.status == "exited" else None

    def final(self) -> dict[str, Any]:
        """The broker's final status: final.json on its state volume (its log ends with the
        table `up` prints instead)."""
        import io
        import json
        import tarfile

        stream, _ = self.container("broker").get_archive("/state/final.json")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            assert member is not None
            return dict(json.loads(member.read()))

    def final_status(self) -> dict[str, dict[str, Any]]:
        """The broker's final status, vertices by name."""
        return {v["name"]: v for v in self.final()["vertices"]}

    def volume(self, vertex: str) -> str:
        return f"{self.name}_{vertex}-state"

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "2", check=False)


def wait_for(probe: Callable[[], Any], timeout_s: float, what: str, context: Callable[[], str] | None = None) -> Any:
    """:func:`tests.helpers.wait_until`, polling containers less often."""
    return wait_until(probe, timeout_s, what, context, interval=0.2)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def copy_examples(dest: Path) -> Path:
    """A private copy of examples/ (compose runs write outputs beside the pipeline)."""
    out = dest / "examples"
    shutil.copytree(ROOT / "examples", out, ignore=shutil.ignore_patterns("out", ".pipelogic", "__pycache__"))
    return out


def counter_fold(n: int) -> list[int]:
    """The chaos counter's crash-free outputs over 0..n-1 (its own logic module)."""
    spec = importlib.util.spec_from_file_location("docker_counter_logic", CHAOS / "counter" / "src" / "logic.py")
    assert spec is not None and spec.loader is not None
    logic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(logic)
    state = copy.deepcopy(logic.INITIAL)
    outs = []
    for x in range(n):
        out, state = logic.step(x, state)
        outs.append(out)
    return outs


def compose_for(pipeline: Path, *flags: str) -> Path:
    """`pipelogic compose` beside the pipeline; the file's path."""
    subprocess.run(
        [sys.executable, "-m", "pipelogic", "compose", str(pipeline), *flags],
        check=True,
        capture_output=True,
        text=True,
    )
    return pipeline.parent / "compose.yaml"


def slow_counter_pipeline(base: Path, count: int, rate: int, snapshot: str = "200 ticks") -> Path:
    """sequence (rate-limited, so a test can act mid-stream) -> the chaos counter -> jsonl."""
    d = base / "pipe"
    d.mkdir(parents=True)
    shutil.copytree(CHAOS / "counter", d / "counter")
    (d / "pipeline.yml").write_text(
        textwrap.dedent(f"""\
        name: slow
        components:
          numbers: {{source: sequence, count: {count}, rate: {rate}}}
          counter: {{path: ./counter, snapshot: "{snapshot}"}}
          out:     {{sink: jsonl, path: ./out/sums.jsonl}}
        connections:
          - numbers -> counter
          - counter -> out
        """)
    )
    return d / "pipeline.yml"


def hello_reference(base: Path) -> Path:
    """The example pipeline's outputs from `pipelogic up` on a fresh copy: its out folder."""
    hello = copy_examples(base) / "hello"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelogic",
            "up",
            str(hello / "pipeline.yml"),
            "--listen",
            "tcp://127.0.0.1:0",
            "--no-progress",
            "--timeout",
            "90",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return hello / "out"
