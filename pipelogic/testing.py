"""Test a component against a real broker, in about ten lines.

::

    from pipelogic.testing import run_component

    def test_double():
        assert run_component("components/double", [[1, 2, 3]]) == [2, 4, 6]

``run_component`` starts the broker stub in this process (a thread, real zmq sockets on
loopback), feeds the given inputs, runs the component, and returns what it emitted. The
component is either a directory (run as a real ``pipelogic worker`` process) or a worker
function (run in a thread of this process, with types given as arguments).

This module is the one place in :mod:`pipelogic` that uses :mod:`backend_stub`, imported
when a helper is called: the broker is a test fixture here, as dramatiq ships its stub.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from pipelogic.component import load_component
from pipelogic.errors import PipelineFailed
from pipelogic.pipeline import parse_pipeline

__all__ = ["run_component", "run_pipeline"]


def _broker_module() -> Any:
    return importlib.import_module("backend_stub")


def run_pipeline(
    pipeline: Any,
    listen: str = "tcp://127.0.0.1:0",
    timeout_s: float = 60.0,
    workers: dict[str, Callable[[str], Any]] | None = None,
    state_dir: str | Path | None = None,
    durable_broker: bool = False,
    **settings: Any,
) -> Any:
    """Serve a loaded Pipeline on an in-process broker, start a worker process per
    component vertex (or call ``workers[name](endpoint)`` to start it yourself), wait for
    the end and return the broker. Raises PipelineFailed with the cause on failure.
    ``durable_broker``: the broker keeps its run in a recovery store under ``state_dir``.

    Worker processes keep their snapshots in ``state_dir`` (a fresh temporary directory,
    removed afterwards, when not given)."""
    if state_dir is None:
        with tempfile.TemporaryDirectory(prefix="pipelogic-state-") as tmp:
            return run_pipeline(pipeline, listen, timeout_s, workers, tmp, durable_broker, **settings)
    bs = _broker_module()
    broker = bs.Broker(
        pipeline,
        listen,
        bs.Settings.from_pipeline(pipeline, **settings),
        state_dir=Path(state_dir) if durable_broker else None,
    ).start()
    procs: list[subprocess.Popen[bytes]] = []
    logs: dict[int, tuple[str, Any]] = {}  # a worker process's pid -> its vertex, its stderr (a temp file)
    reported: set[int] = set()  # workers whose stderr a PipelineFailed already quotes
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []
    try:
        for name, v in pipeline.vertices.items():
            if v.kind != "component":
                continue
            if workers and name in workers:

                def target(fn: Callable[[str], Any] = workers[name]) -> None:
                    try:
                        fn(broker.endpoint)
                    except BaseException as exc:  # noqa: BLE001 - re-raised below
                        errors.append(exc)

                t = threading.Thread(target=target, daemon=True, name=f"worker-{name}")
                t.start()
                threads.append(t)
            else:
                assert v.component is not None
                env = dict(
                    os.environ,
                    PIPELOGIC_BROKER=broker.endpoint,
                    PIPELOGIC_COMPONENT=name,
                    PIPELOGIC_STATE_DIR=str(state_dir),
                )
                # Its stderr to a file (a pipe could fill and block it): a worker that fails
                # is then reported with its own error, and the rest is passed on at the end.
                log = tempfile.TemporaryFile()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "pipelogic", "worker", str(v.component.directory)], env=env, stderr=log
                )
                procs.append(proc)
                logs[proc.pid] = (name, log)
        deadline = time.monotonic() + timeout_s
        while not broker.join(0.05):
            dead = [p for p in procs if p.poll() not in (None, 0)]
            if dead or errors or time.monotonic() > deadline:
                broker.stop()
                broker.join(10)
                if broker.scheduler.failed:
                    break
                if dead:
                    name, log = logs[dead[0].pid]
                    reported.add(dead[0].pid)
                    raise PipelineFailed(
                        f"worker {name} exited with code {dead[0].returncode}:\n"
                        + "\n".join(_said(log, error_only=True))
                    )
                if errors:
                    raise PipelineFailed(f"a worker raised: {errors[0]}") from errors[0]
                raise PipelineFailed(f"pipeline {pipeline.name} did not finish within {timeout_s:g} s")
        for t in threads:
            t.join(10)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    finally:
        broker.stop()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pid, (name, log) in logs.items():
            if pid not in reported:  # what the workers logged, where a test runner shows it
                sys.stderr.write("".join(f"{name} | {line}\n" for line in _said(log)))
            log.close()
    if broker.scheduler.failed:
        cause = errors[0] if errors else None
        raise PipelineFailed(broker.scheduler.failed) from cause
    if errors:
        raise PipelineFailed(f"a worker raised: {errors[0]}") from errors[0]
    return broker


def _said(log: Any, error_only: bool = False) -> list[str]:
    """The lines a worker wrote to its stderr file; ``error_only``: from its ``error:`` line
    on (a worker prints its failure once, with the user's frames), at most 60."""
    log.seek(0)
    lines: list[str] = log.read().decode(errors="replace").splitlines()
    if error_only:
        start = next((i for i, line in enumerate(lines) if line.startswith("error:")), max(0, len(lines) - 60))
        lines = lines[start : start + 60]
    return lines


def run_component(
    component: str | Path | Callable[..., Any],
    inputs: Sequence[Sequence[Any]] = (),
    *,
    config: dict[str, Any] | None = None,
    input_types: Sequence[str] | None = None,
    output_types: Sequence[str] | None = None,
    config_schema: dict[str, Any] | None = None,
    timeout_s: float = 60.0,
    **run_options: Any,
) -> Any:
    """Run one component on ``inputs`` (one list per input stream) and return its outputs:
    a list for one output stream, a tuple of lists for several, None for none.

    ``component`` is a component directory, or a worker function together with
    ``input_types``/``output_types`` (pipelang expressions) and ``run_options`` for
    :func:`pipelogic.worker.run` (``initial_state=``, ``initial_pull_request=``, ...).
    """
    with tempfile.TemporaryDirectory(prefix="pipelogic-test-") as tmp:
        base = Path(tmp)
        if callable(component):
            cdir = base / "component"
            (cdir / "src").mkdir(parents=True)
            worker: dict[str, Any] = {}
            if input_types:
                worker["input_types"] = list(input_types)
            if output_types:
                worker["output_types"] = list(output_types)
            if config_schema:
                worker["config_schema"] = config_schema
            (cdir / "component.yml").write_text(
                yaml.safe_dump({"name": "component", "language": "py", "worker": worker})
            )
        else:
            cdir = Path(component).resolve()
        spec = load_component(cdir)
        comps: dict[str, Any] = {"component": {"path": str(cdir), "config": dict(config or {})}}
        conns = []
        if len(inputs) != len(spec.input_types):
            raise ValueError(f"the component has {len(spec.input_types)} input(s), got {len(inputs)} input list(s)")
        for j, (values, t) in enumerate(zip(inputs, spec.input_types)):
            comps[f"in{j}"] = {"source": "values", "values": list(values), "type": str(t)}
            conns.append(f"in{j} -> component.{j}")
        for k in range(len(spec.output_types)):
            comps[f"out{k}"] = {"sink": "memory"}
            conns.append(f"component.{k} -> out{k}")
        pipeline = parse_pipeline(
            {"name": f"test-{spec.name}", "components": comps, "connections": conns}, base / "pipeline.yml"
        )
        workers: dict[str, Callable[[str], Any]] | None = None
        if callable(component):
            fn = component

            def start(endpoint: str) -> None:
                from pipelogic.worker import WorkerSettings, run

                run(
                    fn,
                    _settings=WorkerSettings(
                        broker=endpoint,
                        component_dir=cdir,
                        vertex="component",
                        state_dir=base / "state",
                        connect_timeout_s=10,
                    ),
                    **run_options,
                )

            workers = {"component": start}
        broker = run_pipeline(pipeline, timeout_s=timeout_s, workers=workers)
        outs = [broker.scheduler.vertices[f"out{k}"].sink.values for k in range(len(spec.output_types))]
    if not outs:
        return None
    return outs[0] if len(outs) == 1 else tuple(outs)
