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
import time
from pathlib import Path
from typing import Any

from pipelogic import protocol as P
from pipelogic.cli._console import Console
from pipelogic.cli._display import loss_notes, progress_line, status_table
from pipelogic.cli._fleet import Fleet, WorkerProcess
from pipelogic.client import BrokerClient
from pipelogic.errors import DefinitionError, PipelogicError
from pipelogic.pipeline import Pipeline, apply_scale, load_pipeline, parse_scale, source_problems
from pipelogic.runs import default_state_dir

__all__ = ["Supervisor"]

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


class Supervisor:
    """One `pipelogic up` run: :meth:`run` returns its exit code."""

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
        ui: str | None = None,
    ) -> None:
        self.file = file
        self.ui = ui
        self.scale = scale
        self.metrics = metrics
        self.keys = Path(keys).resolve() if keys else None
        self.fresh = fresh
        self.listen = listen
        self.state_dir = state_dir
        self.max_restarts = max_restarts
        self.backoff_max = backoff_max
        self.tty = sys.stdout.isatty() if progress is None else progress
        self.console = Console(self.tty)
        self.echo = self.console.echo
        self.timeout_s = timeout_s
        self.interrupted = False
        self.endpoint = ""
        self.broker_error = ""
        self.last_status: P.StatusReply | None = None

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
        if self.ui:
            args += ["--ui", self.ui]
        if self.keys is not None:
            args += ["--keys", str(self.keys)]
        for item in self.scale:
            args += ["--scale", item]
        return self.console.spawn(
            [*args, "--fresh"] if fresh else args, env, "broker | ", self.file.resolve().parent, self._broker_says
        )

    def _broker_says(self, first: str) -> None:
        """The broker's first line: where it listens, or why it cannot start."""
        if first.startswith("PIPELOGIC_BROKER="):
            self.endpoint = first.split("=", 1)[1]
        elif first.startswith("PIPELOGIC_BROKER_ERROR="):
            try:
                self.broker_error = str(json.loads(first.split("=", 1)[1])["message"])
            except (ValueError, KeyError, TypeError):
                self.broker_error = first.split("=", 1)[1]
        elif first:
            self.echo(first)

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

    def _load(self) -> Pipeline | None:
        """The pipeline, scaled and checked (None: the problems are said)."""
        try:
            pipeline = load_pipeline(self.file)
            apply_scale(pipeline, parse_scale(self.scale))
            problems = source_problems(pipeline)
            if problems:
                raise DefinitionError(problems)
        except DefinitionError as exc:
            for p in exc.problems:
                self.echo(f"error: {p}", err=True)
            return None
        except ValueError as exc:
            self.echo(f"error: {exc}", err=True)
            return None
        return pipeline

    def run(self) -> int:
        pipeline = self._load()
        if pipeline is None:
            return 2
        # SUPERVISED: the broker and the workers leave the final report to `up`, so each
        # failure is printed once.
        env = dict(os.environ, PYTHONUNBUFFERED="1", PIPELOGIC_SUPERVISED="1")
        # The children's stderr is a pipe to us: they stamp their lines when we are not on a terminal.
        env.setdefault("PIPELOGIC_LOG_TIMESTAMPS", "0" if sys.stdout.isatty() else "1")
        # Relative to where `up` was started, like any path on a command line; the children
        # (which run in the pipeline's folder) get it absolute.
        state_dir = Path(self.state_dir).resolve() if self.state_dir else default_state_dir(self.file)
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
            for t in self.console.pumps:
                t.join(2)  # the broker's own words come first
            cause = self.broker_error or _BROKER_FINAL.get(broker.returncode, f"exit code {broker.returncode}")
            self.echo(f"error: the broker did not start: {cause}", err=True)
            return broker.returncode or 1
        env["PIPELOGIC_BROKER"] = self.endpoint
        # A replicated vertex: one process per instance, each with an instance id of its own
        # (a restart keeps it, so the broker takes it for the same instance): VERTEX#i, as
        # VERTEX.i names an output stream.
        fleet = Fleet(
            self.console,
            [
                WorkerProcess(n, v.component.directory, f"{n}#{k}" if v.replicas > 1 else "")
                for n, v in pipeline.vertices.items()
                if v.component is not None
                for k in range(v.replicas)
            ],
            self.file.resolve().parent,
            self.max_restarts,
            self.backoff_max,
            state_dir / "logs",
        )
        self.echo(
            f"pipeline {pipeline.name}: broker at {self.endpoint}, {len(fleet.workers)} worker(s), state in {state_dir}"
        )
        for folder in pipeline.outside:
            self.echo(
                f"note: allow_paths_outside: this run reads and writes files in {folder}, outside the pipeline's folder"
            )
        started = time.monotonic()
        old = {sig: signal.signal(sig, self._sigint) for sig in (signal.SIGINT, signal.SIGTERM)}
        client = BrokerClient(self.endpoint, timeout_s=1.0)
        final = None
        try:
            broker, failure = self._watch(broker, env, fleet, client, started)
        finally:
            try:
                final = client.status() if broker.poll() is None else None
            except PipelogicError:
                pass
            # Workers first: each snapshots only after the broker confirmed its results.
            fleet.stop()
            if broker.poll() is None:
                broker.send_signal(signal.SIGTERM)
            try:
                rc = broker.wait(10)
            except subprocess.TimeoutExpired:
                broker.kill()
                rc = broker.wait()
            for sig, handler in old.items():
                signal.signal(sig, handler)
        for t in self.console.pumps:
            t.join(2)
        st = self.console.final_status or final or self.last_status
        if st is not None and failure:
            st = _failed(st, fleet.failed_vertices)
        return self._report(pipeline, st, failure, rc, state_dir, started)

    def _watch(
        self, broker: subprocess.Popen[str], env: dict[str, str], fleet: Fleet, client: BrokerClient, started: float
    ) -> tuple[subprocess.Popen[str], str]:
        """Supervise the broker and the workers until the run ends: the broker (restarted
        if it crashed) and why the run failed ("" if it did not)."""
        last: dict[str, tuple[float, int]] = {}
        rates: dict[str, float] = {}
        next_status = 0.0
        next_plain = 0.0
        failure = ""
        broker_restarts = 0
        while True:
            now = time.monotonic()
            if broker.poll() is not None:
                rc = broker.returncode
                if rc in _BROKER_FINAL or self.interrupted:
                    return broker, failure
                if broker_restarts >= self.max_restarts:
                    return broker, f"the broker exited with code {rc} {broker_restarts + 1} times; giving up"
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
                return broker, failure
            if self.timeout_s is not None and now - started > self.timeout_s:
                return broker, f"the pipeline did not finish within {self.timeout_s:g} s"
            for w in fleet.workers:
                failure = failure or fleet.supervise(w, env, client, now)
            if failure:
                return broker, failure
            if now >= next_status:
                next_status = now + 0.5
                try:
                    st = client.status()
                except PipelogicError:
                    st = None
                if st is not None:
                    fleet.kill_orphans(st)
                    for s in st.streams:
                        t0, c0 = last.get(s["from"], (now, s["count"]))
                        if now > t0:
                            rates[s["from"]] = (s["count"] - c0) / (now - t0)
                        last[s["from"]] = (now, s["count"])
                    if self.tty or now >= next_plain:
                        next_plain = now + 5.0
                        self.console.show(progress_line(st, rates))
                    self.last_status = st
            time.sleep(0.05)

    def _report(
        self, pipeline: Pipeline, st: P.StatusReply | None, failure: str, rc: int, state_dir: Path, started: float
    ) -> int:
        """Say how the run ended; the exit code."""
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
