"""The worker processes of `pipelogic up`: started, watched, restarted with backoff when
they crash, and stopped in order at the end."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelogic import protocol as P
from pipelogic.cli._console import Console, LogFile
from pipelogic.cli._worker import EXIT_START
from pipelogic.client import BrokerClient
from pipelogic.errors import PipelogicError

__all__ = ["Fleet", "WorkerProcess"]

_HEALTHY_S = 10.0  # a worker that ran this long before crashing restarts without backoff


@dataclass
class WorkerProcess:
    """One worker process `up` runs: a vertex's, or one instance of a replicated vertex."""

    name: str
    directory: Path
    instance: str = ""  # PIPELOGIC_INSTANCE of a replicated vertex's instance
    proc: subprocess.Popen[str] | None = None
    restarts: int = 0
    streak: int = 0  # crashes in a row, each within _HEALTHY_S of its start: sets the backoff
    started: float = 0.0
    next_start: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    finished: bool = False  # exited because its vertex's streams ended: never started again

    @property
    def label(self) -> str:
        return self.instance or self.name


class Fleet:
    """The worker processes of one run; ``cwd`` is the pipeline's folder (relative paths in
    a worker mean what they mean in pipeline.yml)."""

    def __init__(
        self,
        console: Console,
        workers: list[WorkerProcess],
        cwd: Path,
        max_restarts: int,
        backoff_max: float,
        log_dir: Path | None = None,
    ) -> None:
        """``log_dir``: each worker's lines are kept there too (``LABEL.log``)."""
        self.console = console
        self.logs = {w.label: LogFile(log_dir / f"{w.label}.log") for w in workers} if log_dir is not None else {}
        self.workers = workers
        self.cwd = cwd
        self.max_restarts = max_restarts
        self.backoff_max = backoff_max
        self.width = max([len(w.label) for w in workers] + [6])  # of the log prefix
        self.failed_vertices: set[str] = set()  # vertices whose worker failed the run (up decided it)

    def supervise(self, w: WorkerProcess, env: dict[str, str], client: BrokerClient, now: float) -> str:
        """Start ``w`` when it is due, or see how it exited and decide: finished, restart it
        later (with backoff), or fail the run (returned: why; "" otherwise)."""
        width = self.width
        if w.finished:
            return ""
        if w.proc is None:
            if now >= w.next_start and w.exit_codes and not self._still_running(client):
                w.next_start = now + 0.5  # a restart only into a run that goes on
            elif now >= w.next_start:
                wenv = dict(env, PIPELOGIC_COMPONENT=w.name)
                if w.instance:
                    wenv["PIPELOGIC_INSTANCE"] = w.instance
                w.proc = self.console.spawn(
                    [sys.executable, "-m", "pipelogic", "worker", str(w.directory)],
                    wenv,
                    f"{w.label.ljust(width)} | ",
                    self.cwd,
                    log=self.logs.get(w.label),
                )
                w.started = now
            return ""
        rc = w.proc.poll()
        if rc is None:
            return ""
        w.exit_codes.append(rc)
        w.proc = None
        # A worker's last messages (Finished, a failure) travel on its data socket and may
        # reach the broker just after this exit is seen: look again for a moment before
        # calling an exit unasked for.
        deadline = time.monotonic() + (2.0 if rc in (0, EXIT_START) else 0.0)
        while True:
            try:
                st = client.status()
            except PipelogicError:
                # The broker does not answer: it is finishing (then its exit decides, and a
                # worker started now would run again from scratch) or it is gone (then it
                # is restarted and the worker rejoins). Either way, not a restart right now.
                w.next_start = now + 2.0
                return ""
            if st.state != "running":
                w.finished = True
                return ""  # done, or failed: the broker reports the cause and exits
            vertex = next((v for v in st.vertices if v["name"] == w.name), None)
            if vertex is not None and vertex["state"] == "finished":
                if rc == 0:
                    # Closed by the broker: its stream ended. The run goes on for other
                    # vertices, but this one has nothing left to do (starting it again was
                    # issue 25's "second double worker").
                    w.finished = True
                    return ""
                self.failed_vertices.add(w.name)
                return f"worker {w.name} failed after its stream ended (exit code {rc}; its error is above)"
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if rc == EXIT_START:
            self.failed_vertices.add(w.name)
            return (
                f"worker {w.name} failed to start (its error is above); not restarted: a failure "
                "before the first tick repeats on every restart"
            )
        if rc == 0:
            self.console.echo(
                f"{w.label.ljust(width)} | exited with code 0 before its stream ended (the broker did not "
                "stop it: did main.py return from run(), or call sys.exit or os._exit?)",
                err=True,
            )
        if w.restarts >= self.max_restarts:
            self.failed_vertices.add(w.name)
            return f"worker {w.label} exited with code {rc} {w.restarts + 1} times; giving up"
        w.restarts += 1
        w.streak = w.streak + 1 if now - w.started < _HEALTHY_S else 1
        delay = min(0.25 * 2 ** (w.streak - 1), self.backoff_max)
        w.next_start = now + delay
        self.console.echo(
            f"{w.label.ljust(width)} | exited with code {rc}; restarting in {delay:.2f} s ({w.restarts}/{self.max_restarts})",
            err=True,
        )
        return ""

    @staticmethod
    def _still_running(client: BrokerClient) -> bool:
        try:
            return client.status().state == "running"
        except PipelogicError:
            return False

    def kill_orphans(self, st: P.StatusReply) -> None:
        """A worker the broker declared dead (stopped, hung) while its process lives on
        holds its state lock and would never be replaced: kill it, so it restarts."""
        by_name = {v["name"]: v for v in st.vertices}
        for w in self.workers:
            v = by_name.get(w.name)
            if v is None or w.proc is None or w.proc.poll() is not None:
                continue
            # A replicated vertex lists the instances it declared dead.
            lost = (
                w.proc.pid in v["lost_pids"]
                if "lost_pids" in v
                else (v["state"] == "waiting" and v["pid"] == w.proc.pid)
            )
            if lost:
                self.console.echo(
                    f"{w.label} | the broker lost this worker (pid {w.proc.pid}); killing it to restart", err=True
                )
                w.proc.kill()

    def stop(self) -> None:
        """SIGTERM every worker (each snapshots once the broker confirmed its results), then reap them."""
        workers = self.workers
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 8
        for w in workers:
            if w.proc is None:
                continue
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
