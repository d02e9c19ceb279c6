"""`pipelogic up`: the broker plus one process per component, supervised.

It prefixes every worker's log lines with its vertex name, shows live progress (a status
line redrawn on a terminal, a plain line every few seconds otherwise), restarts a crashed
worker with backoff, and exits with the broker's verdict: 0 when drained, non-zero with
the cause otherwise.

The broker keeps the run in a recovery store under the state directory, and is supervised
like a worker: a broker that dies is restarted on the same store and address, and the
workers rejoin it. Ctrl-C or SIGTERM stops the workers first (each snapshots once the
broker confirmed its last results), then the broker, and reaps every child; running ``up``
again continues the run. The children run in their own process group (a terminal's Ctrl-C
reaches ``up`` alone, which stops them in order) and get SIGTERM if ``up`` dies, however it
dies (a parent-death signal), so none keeps writing after it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pipelogic import protocol as P
from pipelogic.cli._display import loss_notes, progress_line, status_table
from pipelogic.cli._worker import EXIT_START
from pipelogic.client import BrokerClient
from pipelogic.errors import DefinitionError, PipelogicError
from pipelogic.pipeline import apply_scale, load_pipeline, parse_scale, source_problems
from pipelogic.runs import default_state_dir

__all__ = ["Supervisor"]

_HEALTHY_S = 10.0  # a worker that ran this long before crashing restarts without backoff
_PR_SET_PDEATHSIG = 1
# Broker exit codes that a restart cannot fix (backend_stub/__main__.py).
_BROKER_FINAL = {
    0: "done or stopped",
    1: "the pipeline failed",
    2: "invalid pipeline",
    4: "recovery store unusable",
    5: "cannot listen",
}


def _failed(st: P.StatusReply, vertices: set[str]) -> P.StatusReply:
    """The last status the broker gave, as the run ended: `up` failed it (a worker that
    cannot start, or that crashed too often), which the broker, still waiting for the
    worker, did not know."""
    rows = []
    for v in st.vertices:
        if v["name"] in vertices:
            v = v.copy()
            v["state"] = "failed"
        rows.append(v)
    return dataclasses.replace(st, state="failed", vertices=rows)


def _child_setup() -> None:
    """In each child: its own process group, and SIGTERM when `up` dies (Linux)."""
    os.setpgrp()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the children notice the broker's silence instead


@dataclass
class _Worker:
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


class Supervisor:
    def __init__(
        self,
        file: Path,
        listen: str,
        state_dir: str | None,
        max_restarts: int,
        progress: bool | None,
        timeout_s: float | None,
        backoff_max: float = 10.0,
        fresh: bool = False,
        metrics: str | None = None,
        keys: str | None = None,
        scale: tuple[str, ...] = (),
    ) -> None:
        self.file = file
        self.scale = scale
        self.metrics = metrics
        self.keys = Path(keys).resolve() if keys else None
        self.fresh = fresh
        self.listen = listen
        self.state_dir = state_dir
        self.max_restarts = max_restarts
        self.backoff_max = backoff_max
        self.tty = sys.stdout.isatty() if progress is None else progress
        self.timeout_s = timeout_s
        self.lock = threading.Lock()
        self.status_shown = False
        self.interrupted = False
        self.endpoint = ""
        self.broker_error = ""
        self.final_status: P.StatusReply | None = None
        self.pumps: list[threading.Thread] = []
        self.failed_vertices: set[str] = set()  # vertices whose worker failed the run (up decided it)

    # -- output ----------------------------------------------------------------------------

    def echo(self, line: str, err: bool = False) -> None:
        stream = sys.stderr if err else sys.stdout
        with self.lock:
            if self.status_shown and self.tty:
                sys.stdout.write("\r\x1b[K")
                self.status_shown = False
            stream.write(line + "\n")
            stream.flush()

    def show(self, line: str) -> None:
        with self.lock:
            if self.tty:
                sys.stdout.write("\r\x1b[K" + line[:200])
                self.status_shown = True
            else:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def _pump(self, stream: IO[str], prefix: str, err: bool) -> None:
        for line in iter(stream.readline, ""):
            if line.startswith("PIPELOGIC_FINAL="):
                try:
                    d = json.loads(line.split("=", 1)[1])
                    self.final_status = P.StatusReply(
                        d["pipeline"], d["state"], d["vertices"], d["streams"], d["error"], d.get("broker")
                    )
                except (ValueError, KeyError, TypeError):
                    pass
                continue
            self.echo(f"{prefix}{line.rstrip()}", err)
        stream.close()

    def _spawn(
        self, args: list[str], env: dict[str, str], prefix: str, capture_first: bool = False
    ) -> subprocess.Popen[str]:
        # Workers run in the pipeline's directory: relative paths mean the same as in pipeline.yml.
        proc = subprocess.Popen(
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=self.file.resolve().parent,
            preexec_fn=_child_setup,
        )
        assert proc.stdout is not None and proc.stderr is not None
        if capture_first:
            first = proc.stdout.readline().strip()
            if first.startswith("PIPELOGIC_BROKER="):
                self.endpoint = first.split("=", 1)[1]
            elif first.startswith("PIPELOGIC_BROKER_ERROR="):
                try:
                    self.broker_error = str(json.loads(first.split("=", 1)[1])["message"])
                except (ValueError, KeyError, TypeError):
                    self.broker_error = first.split("=", 1)[1]
            elif first:
                self.echo(first)
        for stream, pre, err in (
            (proc.stdout, prefix if not capture_first else "", False),
            (proc.stderr, prefix, True),
        ):
            t = threading.Thread(target=self._pump, args=(stream, pre, err), daemon=True)
            t.start()
            if capture_first:
                self.pumps.append(t)
        return proc

    # -- the run ---------------------------------------------------------------------------

    def _start_broker(self, env: dict[str, str], listen: str, fresh: bool) -> subprocess.Popen[str]:
        args = [
            sys.executable,
            "-m",
            "backend_stub",
            str(self.file.resolve()),
            "--listen",
            listen,
            "--state-dir",
            env["PIPELOGIC_STATE_DIR"],
        ]
        if self.metrics:
            args += ["--metrics", self.metrics]
        if self.keys is not None:
            args += ["--keys", str(self.keys)]
        for item in self.scale:
            args += ["--scale", item]
        return self._spawn([*args, "--fresh"] if fresh else args, env, "broker | ", capture_first=True)

    def _note_old_state(self, state_dir: Path) -> None:
        """Before one state directory per pipeline file, every pipeline of a folder shared
        ``.pipelogic/state``: say how to continue a run left there."""
        old = self.file.resolve().parent / ".pipelogic" / "state"
        if not state_dir.exists() and (old / ".broker").exists():
            self.echo(
                f"note: {old} holds a run kept by an earlier pipelogic (one state directory for the whole "
                f"folder); this run starts in {state_dir}. To continue that one instead: "
                f"pipelogic up {self.file} --state-dir {old}"
            )

    def _ensure_keys(self, pipeline: Any) -> None:
        """A key folder for this run: made when missing (the broker's pair, a worker key per
        component vertex, an operator key for `up` itself), else used as it is."""
        from pipelogic.keys import create_broker_key, create_key

        assert self.keys is not None
        if (self.keys / "broker.key").is_file():
            return
        create_broker_key(self.keys)
        for name, v in pipeline.vertices.items():
            if v.component is not None:
                create_key(self.keys, "workers", name, [name])
        create_key(self.keys, "operators", "up")
        self.echo(f"made CurveZMQ keys in {self.keys} (pipelogic keys list {self.keys})")

    def run(self) -> int:
        try:
            pipeline = load_pipeline(self.file)
            apply_scale(pipeline, parse_scale(self.scale))
            problems = source_problems(pipeline)
            if problems:
                raise DefinitionError(problems)
        except DefinitionError as exc:
            for p in exc.problems:
                self.echo(f"error: {p}", err=True)
            return 2
        except ValueError as exc:
            self.echo(f"error: {exc}", err=True)
            return 2
        # SUPERVISED: the broker and the workers leave the final report to `up`, so each
        # failure is printed once.
        env = dict(os.environ, PYTHONUNBUFFERED="1", PIPELOGIC_SUPERVISED="1")
        # The children's stderr is a pipe to us: they stamp their lines when we are not on a terminal.
        env.setdefault("PIPELOGIC_LOG_TIMESTAMPS", "0" if sys.stdout.isatty() else "1")
        state_dir = Path(self.state_dir) if self.state_dir else default_state_dir(self.file)
        if not self.state_dir:
            self._note_old_state(state_dir)
        env["PIPELOGIC_STATE_DIR"] = str(state_dir)
        if self.keys is not None:
            self._ensure_keys(pipeline)
            # Each worker takes its vertex's key from the folder; `up` itself, the operator's.
            env["PIPELOGIC_KEYS"] = os.environ["PIPELOGIC_KEYS"] = str(self.keys)
        broker = self._start_broker(env, self.listen, self.fresh)
        if not self.endpoint:
            broker.wait()
            for t in self.pumps:
                t.join(2)  # the broker's own words come first
            cause = self.broker_error or _BROKER_FINAL.get(broker.returncode, f"exit code {broker.returncode}")
            self.echo(f"error: the broker did not start: {cause}", err=True)
            return broker.returncode or 1
        env["PIPELOGIC_BROKER"] = self.endpoint
        # A replicated vertex: one process per instance, each with an instance id of its own
        # (a restart keeps it, so the broker takes it for the same instance).
        workers = [
            _Worker(n, v.component.directory, f"{n}.{k}" if v.replicas > 1 else "")
            for n, v in pipeline.vertices.items()
            if v.component is not None
            for k in range(v.replicas)
        ]
        self.echo(
            f"pipeline {pipeline.name}: broker at {self.endpoint}, {len(workers)} worker(s), state in {state_dir}"
        )
        for folder in pipeline.outside:
            self.echo(
                f"note: allow_paths_outside: this run reads and writes files in {folder}, outside the pipeline's folder"
            )
        width = max([len(w.label) for w in workers] + [6])
        old = {sig: signal.signal(sig, self._sigint) for sig in (signal.SIGINT, signal.SIGTERM)}
        client = BrokerClient(self.endpoint, timeout_s=1.0)
        started = time.monotonic()
        last: dict[str, tuple[float, int]] = {}
        rates: dict[str, float] = {}
        next_status = 0.0
        next_plain = 0.0
        failure = ""
        broker_restarts = 0
        rc = 0
        try:
            while True:
                now = time.monotonic()
                if broker.poll() is not None:
                    rc = broker.returncode
                    if rc in _BROKER_FINAL or self.interrupted:
                        break
                    if broker_restarts >= self.max_restarts:
                        failure = f"the broker exited with code {rc} {broker_restarts + 1} times; giving up"
                        break
                    broker_restarts += 1
                    delay = min(0.25 * 2 ** (broker_restarts - 1), self.backoff_max)
                    self.echo(
                        f"broker | exited with code {rc}; restarting it on its store in {delay:.2f} s "
                        f"({broker_restarts}/{self.max_restarts}); the workers rejoin it",
                        err=True,
                    )
                    time.sleep(delay)
                    # Where the first one listened: the workers know that address. If it
                    # cannot start, the next turn sees it exited.
                    broker = self._start_broker(env, env["PIPELOGIC_BROKER"], False)
                    continue
                if self.interrupted:
                    self.echo("interrupted: stopping the workers (each snapshots), then the broker")
                    break
                if self.timeout_s is not None and now - started > self.timeout_s:
                    failure = f"the pipeline did not finish within {self.timeout_s:g} s"
                    break
                for w in workers:
                    failure = failure or self._supervise(w, env, width, client, now)
                if failure:
                    break
                if now >= next_status:
                    next_status = now + 0.5
                    try:
                        st = client.status()
                    except PipelogicError:
                        st = None
                    if st is not None:
                        self._kill_orphans(st, workers)
                        for s in st.streams:
                            t0, c0 = last.get(s["from"], (now, s["count"]))
                            if now > t0:
                                rates[s["from"]] = (s["count"] - c0) / (now - t0)
                            last[s["from"]] = (now, s["count"])
                        if self.tty:
                            self.show(progress_line(st, rates))
                        elif now >= next_plain:
                            next_plain = now + 5.0
                            self.show(progress_line(st, rates))
                        self.last_status = st
                time.sleep(0.05)
        finally:
            final = None
            try:
                final = client.status() if broker.poll() is None else None
            except PipelogicError:
                pass
            # Workers first: each snapshots only after the broker confirmed its results.
            self._stop_workers(workers)
            if broker.poll() is None:
                broker.send_signal(signal.SIGTERM)
            try:
                rc = broker.wait(10)
            except subprocess.TimeoutExpired:
                broker.kill()
                rc = broker.wait()
            for sig, handler in old.items():
                signal.signal(sig, handler)
        for t in self.pumps:
            t.join(2)
        st = self.final_status or final or getattr(self, "last_status", None)
        if st is not None and failure:
            st = _failed(st, self.failed_vertices)
        if st is not None:
            self.echo(status_table(st, with_error=False))  # the cause is said once, below
        if failure:
            self.echo(f"pipeline {pipeline.name} failed: {failure}", err=True)
            return 1
        if self.interrupted:
            self.echo(
                f"stopped; the run is kept in {state_dir}: `pipelogic up {self.file}` continues it "
                "(--fresh starts anew)"
            )
            return 130
        if rc == 0 and st is not None and st.state == "done":
            lost = loss_notes(st.vertices)
            self.echo(
                f"pipeline {pipeline.name}: done in {time.monotonic() - started:.1f} s"
                + (f", with losses ({'; '.join(lost)})" if lost else "")
            )
            return 0
        if st is not None and st.error:
            self.echo(f"pipeline {pipeline.name} failed: {st.error}", err=True)
            return rc or 1
        self.echo(
            f"pipeline {pipeline.name}: failed (broker exit code {rc}: "
            f"{_BROKER_FINAL.get(rc, 'killed or crashed')}); the cause is above",
            err=True,
        )
        return rc or 1

    def _sigint(self, signum: int, frame: Any) -> None:
        self.interrupted = True

    def _supervise(self, w: _Worker, env: dict[str, str], width: int, client: BrokerClient, now: float) -> str:
        if w.finished:
            return ""
        if w.proc is None:
            if now >= w.next_start and w.exit_codes and not self._still_running(client):
                w.next_start = now + 0.5  # a restart only into a run that goes on
            elif now >= w.next_start:
                wenv = dict(env, PIPELOGIC_COMPONENT=w.name)
                if w.instance:
                    wenv["PIPELOGIC_INSTANCE"] = w.instance
                w.proc = self._spawn(
                    [sys.executable, "-m", "pipelogic", "worker", str(w.directory)], wenv, f"{w.label.ljust(width)} | "
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
            self.echo(
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
        self.echo(
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

    def _kill_orphans(self, st: P.StatusReply, workers: list[_Worker]) -> None:
        """A worker the broker declared dead (stopped, hung) while its process lives on
        holds its state lock and would never be replaced: kill it, so it restarts."""
        by_name = {v["name"]: v for v in st.vertices}
        for w in workers:
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
                self.echo(
                    f"{w.label} | the broker lost this worker (pid {w.proc.pid}); killing it to restart", err=True
                )
                w.proc.kill()

    def _stop_workers(self, workers: list[_Worker]) -> None:
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
