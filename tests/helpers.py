"""Helpers shared by the integration tests (a module, not conftest: several conftest.py
files exist, and only one can be imported under that name)."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path


def run_up(tmp_path: Path, pipeline: str, env: dict, *extra: str) -> subprocess.CompletedProcess:
    """Write pipeline.yml and run `pipelogic up` on it (random port, bounded time)."""
    f = tmp_path / "pipeline.yml"
    f.write_text(textwrap.dedent(pipeline))
    return subprocess.run(
        [sys.executable, "-m", "pipelogic", "up", str(f), "--listen", "tcp://127.0.0.1:0", "--timeout", "90", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def up_args(pipeline: Path, *flags: str) -> list[str]:
    """The command line of `pipelogic up` on ``pipeline``: a random port, no progress line."""
    return [
        sys.executable,
        "-m",
        "pipelogic",
        "up",
        str(pipeline),
        "--listen",
        "tcp://127.0.0.1:0",
        "--no-progress",
        *flags,
    ]


def up_file(pipeline: Path, env: dict, *flags: str) -> subprocess.CompletedProcess:
    """`pipelogic up` on an existing pipeline file (random port, bounded time, no progress)."""
    return subprocess.run(
        up_args(pipeline, "--timeout", "90", *flags),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class BrokerProc:
    """A standalone broker process (``python -m backend_stub``) on a random port. Its
    stderr (where a standalone broker says ``PIPELOGIC_BROKER=...`` and logs) is read on
    a thread into ``lines``, so it never blocks on a full pipe."""

    def __init__(self, pipeline: Path, env: dict, *args: str) -> None:
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend_stub", str(pipeline), "--listen", "tcp://127.0.0.1:0", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.endpoint = ""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("PIPELOGIC_BROKER="):
                self.endpoint = line.strip().split("=", 1)[1]
                break
        stderr = self.proc.stderr
        assert stderr is not None
        self._reader = threading.Thread(target=lambda: self.lines.extend(stderr), daemon=True)
        self._reader.start()
        assert self.endpoint, "".join(self.lines)

    def stop(self, kill: bool = False) -> int:
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
        code = self.proc.wait(15)
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code


def listening_ports(pid: int) -> list[int]:
    """The TCP ports a process listens on (from /proc: its socket inodes in the LISTEN state)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in list(f)[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:
                ports.append(int(parts[1].split(":")[1], 16))
    return ports


def rss_kb(pid: int) -> int:
    """A process's resident memory in KiB (from /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_until(probe, timeout_s: float = 30.0, what: str = "a condition", context=None, interval: float = 0.05):
    """Poll ``probe`` every ``interval`` seconds until it returns something truthy (returned);
    fail after the timeout, saying ``what`` it waited for and ``context()`` if given."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(interval)
    extra = f"\n{context()}" if context is not None else ""
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{extra}")


def reap(procs: list, broker: "BrokerProc | None" = None) -> None:
    """Kill what still runs of ``procs`` (worker processes), reap them and close their
    pipes; then stop ``broker``."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(15)
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()
    if broker is not None:
        broker.stop(kill=True)


def free_port() -> int:
    """A TCP port free on loopback now (for a server a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str) -> dict:
    """A Prometheus endpoint's samples: {(name, sorted labels): value}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def running_past(client, vertex: str, ticks: int):
    """``vertex``'s status once it runs and has done more than ``ticks`` ticks, else None."""
    v = next(v for v in client.status().vertices if v["name"] == vertex)
    return v if v["state"] == "running" and v["ticks"] > ticks else None


def run_ended(client):
    """The run's status once it is no longer running (done or failed), else None."""
    st = client.status()
    return st if st.state != "running" else None
