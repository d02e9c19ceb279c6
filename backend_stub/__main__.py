"""``python -m backend_stub PIPELINE.yml --listen tcp://0.0.0.0:5550``: the broker alone."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
from pathlib import Path

import click
import zmq

from backend_stub.auth import KeyRing
from backend_stub.broker import Broker
from backend_stub.metrics import MetricsServer, parse_address
from backend_stub.scheduler import Settings
from pipelogic import _logging
from pipelogic.cli._display import status_table
from pipelogic.errors import DefinitionError, KeyFileError, StateError
from pipelogic.keys import init_container_keys, worker_uids
from pipelogic.pipeline import apply_scale, load_pipeline, parse_scale
from pipelogic.runs import remove_address, write_address
from pipelogic.transport import DEFAULT_BROKER

EXIT_STORE = 4
EXIT_LISTEN = 5


def run_as_owner_of(path: str, groups: list[int] | None = None) -> None:
    """Started as root (a container's broker service): take the uid and gid of ``path``'s
    owner, so files the broker writes there (sinks, dead letters) belong to that user, with
    ``groups`` as its supplementary groups (the workers' groups under keys: the broker reads
    every pool, which are group-readable; docs/security.md).

    The shared-memory directory of a container run (``PIPELOGIC_SHM_DIR``, a tmpfs volume of
    this pipeline's alone, sticky like /dev/shm) is made that user's first: in a sticky
    directory only a file's owner or the directory's removes it, and the broker removes the
    pools of workers that ended, which run as users of their own."""
    if os.geteuid() != 0:
        return
    st = os.stat(path)
    if st.st_uid == 0:
        return
    shm = os.environ.get("PIPELOGIC_SHM_DIR")
    if shm and os.path.isdir(shm):
        os.chown(shm, st.st_uid, -1)
    os.setgroups(sorted(set(groups or ())))
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)
    logging.getLogger("backend_stub").info("running as uid %d, gid %d (the owner of %s)", st.st_uid, st.st_gid, path)


def _owner_uid(path: str | None) -> int:
    """The uid the broker will run as (``--run-as-owner-of``), to own its secret key."""
    if path and os.geteuid() == 0 and os.stat(path).st_uid != 0:
        return os.stat(path).st_uid
    return os.geteuid()


def _cannot_start(code: int, message: str) -> int:
    """Say why the broker cannot start. Under ``pipelogic up`` (PIPELOGIC_SUPERVISED=1) on
    stdout, the stream `up` reads first, so the cause always reaches the user whatever
    the order in which the two streams are read; otherwise as an ``error:`` line."""
    if os.environ.get("PIPELOGIC_SUPERVISED") == "1":
        click.echo("PIPELOGIC_BROKER_ERROR=" + json.dumps({"code": code, "message": message}))
        sys.stdout.flush()
    else:
        click.echo(f"error: {message}", err=True)
    return code


def serve(
    pipeline_file: str,
    listen: str,
    exit_when_done: bool,
    owner_of: str | None = None,
    state_dir: str | None = None,
    fresh: bool = False,
    metrics: str | None = None,
    log_level: str | None = None,
    keys: str | None = None,
    init_keys: bool = False,
    scale: tuple[str, ...] = (),
    ui: str | None = None,
    **overrides: int | None,
) -> int:
    """Load, serve until done; print the bound endpoint first (``PIPELOGIC_BROKER=...``).

    Exit codes: 0 the pipeline is done, or the broker was stopped by SIGTERM/SIGINT (a
    graceful stop); 1 the pipeline failed; 2 the pipeline definition is invalid; 4 the
    recovery store is in use, unusable, or holds a changed pipeline's run; 5 the listen
    address cannot be bound."""
    _logging.setup(log_level)
    supervised = os.environ.get("PIPELOGIC_SUPERVISED") == "1"
    try:
        pipeline = load_pipeline(pipeline_file)
        apply_scale(pipeline, parse_scale(scale))
    except DefinitionError as exc:
        for p in exc.problems:
            click.echo(f"error: {p}", err=True)
        return 2
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    ring = None
    uids = worker_uids([n for n, v in pipeline.vertices.items() if v.component is not None])
    if keys:  # before dropping root: the broker's secret may be readable by root alone
        try:
            if init_keys:
                made = init_container_keys(Path(keys), uids, _owner_uid(owner_of))
                if made:
                    logging.getLogger("backend_stub").info("keys: made %d key pair(s) in %s", len(made), keys)
            ring = KeyRing(Path(keys), logging.getLogger("backend_stub"))
        except (KeyFileError, OSError) as exc:
            return _cannot_start(2, f"--keys {keys}: {exc}")
    if owner_of:
        try:
            # A container run with keys: each worker runs as a uid and group of its own
            # (pipelogic.keys.worker_uids); the broker joins every group to read their pools.
            run_as_owner_of(owner_of, list(uids.values()) if keys and init_keys else None)
        except OSError as exc:
            click.echo(f"error: --run-as-owner-of {owner_of}: {exc}", err=True)
            return 2
    view = None
    if ui:
        from backend_stub.ui import UiServer  # only a broker asked for the view loads it

        try:
            # A container's broker is told where its port is published (pipelogic compose --ui).
            view = UiServer(*parse_address(ui, "--ui"), os.environ.get("PIPELOGIC_UI_ON_HOST") or None)
        except ValueError as exc:
            click.echo(f"error: {exc}", err=True)
            return 2
        except OSError as exc:
            return _cannot_start(EXIT_LISTEN, f"cannot serve the web view on {ui}: {exc}")
    server = None
    if metrics:
        try:
            server = MetricsServer(metrics)
        except (OSError, ValueError) as exc:
            if view is not None:
                view.close()
            return _cannot_start(EXIT_LISTEN, f"cannot serve metrics on {metrics}: {exc}")
    try:
        broker = Broker(
            pipeline,
            listen,
            Settings.from_pipeline(pipeline, **overrides),
            exit_when_done,
            Path(state_dir) if state_dir else None,
            fresh,
            keys=ring,
        )
    except (StateError, zmq.ZMQError) as exc:
        if server is not None:
            server.close()
        if view is not None:
            view.close()
        if isinstance(exc, StateError):
            return _cannot_start(EXIT_STORE, str(exc))
        if exc.errno == errno.EADDRINUSE:
            return _cannot_start(
                EXIT_LISTEN,
                f"{listen} is in use (another pipeline, or a process left "
                "over from one, is listening there); stop it, or listen elsewhere: "
                "--listen tcp://127.0.0.1:0 picks a free port",
            )
        return _cannot_start(EXIT_LISTEN, f"cannot listen on {listen}: {exc}")
    # Before the address is told to anyone: a SIGTERM from whoever read it is a graceful stop.
    stopped: list[int] = []

    def _term(signum: int, frame: object) -> None:
        stopped.append(signum)
        broker.stop()
        if broker.metrics is not None:
            broker.metrics.release()  # a stop asked for while the final state lingers: go now

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    if server is not None:
        broker.metrics = server
        logging.getLogger("backend_stub").info("metrics at %s", server.url)
    if view is not None:
        from backend_stub.ui import serve_ui

        serve_ui(broker, view, Path(state_dir) / "logs" if state_dir else None)
    # Where workers connect (the port, if 0 was asked for). On stdout for `pipelogic up`,
    # which reads it first; standalone, stdout is left to a stdout sink's data alone.
    click.echo(f"PIPELOGIC_BROKER={broker.endpoint}", err=not supervised)
    sys.stdout.flush()
    log = logging.getLogger("backend_stub")
    if view is not None:  # said whatever the log level: the user asked for it
        click.echo(f"web view at {view.url}", err=True)
    if state_dir:  # where `status`, `tap` and `config set` find this broker (pipelogic/runs.py)
        try:
            write_address(Path(state_dir), broker.endpoint, Path(pipeline_file), pipeline.name)
        except OSError as exc:
            log.warning(
                "cannot record the broker's address in %s (%s): operator commands need --broker", state_dir, exc
            )
    workers = sum(1 for v in pipeline.vertices.values() if v.component is not None)
    log.debug(
        "pipeline %s from %s: %d vertices, %d to be served by workers",
        pipeline.name,
        pipeline.file,
        len(pipeline.vertices),
        workers,
    )

    try:
        broker.serve()
    except BaseException:
        if broker.metrics is not None:
            broker.metrics.close()
        raise
    finally:
        if view is not None:
            view.close()
        if state_dir:
            remove_address(Path(state_dir))
    try:
        return _report(broker, supervised, state_dir, stopped, exit_when_done)
    finally:
        if broker.metrics is not None:
            if not stopped:  # the run's end (not a stop asked for): its last counters are kept
                broker.metrics.linger(log.info)
            broker.metrics.close()


def _report(broker: Broker, supervised: bool, state_dir: str | None, stopped: list[int], exit_when_done: bool) -> int:
    """Say how the run ended (to `up`, or as a table and final.json); the exit code."""
    log = logging.getLogger("backend_stub")
    pipeline = broker.scheduler.pipeline
    sch = broker.scheduler
    st = broker.status()
    final = {
        "pipeline": st.pipeline,
        "state": st.state,
        "vertices": st.vertices,
        "streams": st.streams,
        "error": st.error,
        "broker": st.broker,
    }
    if supervised:  # `up` prints its table from it
        click.echo("PIPELOGIC_FINAL=" + json.dumps(final))
        sys.stdout.flush()
    else:
        # A container's log (or a terminal) ends with the table `up` prints; the whole status,
        # as JSON, goes to the state directory (final.json) for tools and tests.
        if state_dir:
            try:
                tmp = Path(state_dir) / ".final.json.tmp"
                tmp.write_text(json.dumps(final) + "\n")
                os.replace(tmp, Path(state_dir) / "final.json")
            except OSError as exc:
                log.warning("cannot write the final status to %s: %s", state_dir, exc)
        click.echo(status_table(st, with_error=False), err=True)  # headed "pipeline NAME: STATE"
    if sch.failed:
        if not supervised:  # `up` reports it, once
            click.echo(f"pipeline failed: {sch.failed}", err=True)
        return 1
    if sch.done or stopped:
        if stopped and not sch.done:
            log.info("stopped by %s before the pipeline finished", signal.Signals(stopped[0]).name)
        else:
            log.debug("pipeline %s done", pipeline.name)
        return 0
    return 0 if not exit_when_done else 3


@click.command()
@click.argument("pipeline_file", type=click.Path(exists=True, dir_okay=True))
@click.option("--listen", default=DEFAULT_BROKER, show_default=True, help="Control endpoint to bind.")
@click.option("--serve-forever", is_flag=True, help="Keep serving after the pipeline finished.")
@click.option("--buffer-capacity", type=int, default=None, help="Messages per input buffer.")
@click.option("--credit", type=int, default=None, help="Ticks in flight per worker.")
@click.option("--heartbeat-ms", type=int, default=None, help="How often broker and workers beat, in ms.")
@click.option(
    "--run-as-owner-of",
    "owner_of",
    type=click.Path(exists=True),
    default=None,
    help="Started as root: switch to the uid/gid of this path's owner first (containers).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the run in a recovery store here (STATE_DIR/.broker) and resume it after a restart.",
)
@click.option("--fresh", is_flag=True, help="Discard an unfinished run in the store and start a new one.")
@click.option(
    "--metrics",
    default=None,
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (off by default).",
)
@click.option(
    "--log-level",
    type=click.Choice(_logging.LEVELS),
    default=None,
    help="Log level (also PIPELOGIC_LOG_LEVEL); logs go to stderr.",
)
@click.option(
    "--keys",
    type=click.Path(file_okay=False),
    default=None,
    envvar="PIPELOGIC_BROKER_KEYS",
    help="A key folder (pipelogic keys init): CurveZMQ on every socket, only its keys admitted.",
)
@click.option(
    "--init-keys",
    is_flag=True,
    help="With --keys, in a container started as root: make the missing keys on the keys volume, "
    "each secret owned by the worker uid that uses it (what pipelogic compose files do).",
)
@click.option(
    "--scale",
    multiple=True,
    metavar="VERTEX=N",
    help="Run a stateless component vertex as N worker instances (overrides its replicas:).",
)
@click.option(
    "--ui",
    default=None,
    metavar="[HOST:]PORT",
    help="Serve the live web view at http://HOST:PORT/ (host 127.0.0.1 unless given; off by default).",
)
def main(
    pipeline_file: str,
    listen: str,
    serve_forever: bool,
    buffer_capacity: int | None,
    credit: int | None,
    heartbeat_ms: int | None,
    owner_of: str | None,
    state_dir: str | None,
    fresh: bool,
    metrics: str | None,
    log_level: str | None,
    keys: str | None,
    init_keys: bool,
    scale: tuple[str, ...],
    ui: str | None,
) -> None:
    """Run the broker stub for PIPELINE_FILE."""
    sys.exit(
        serve(
            pipeline_file,
            listen,
            not serve_forever,
            owner_of,
            state_dir,
            fresh,
            metrics,
            log_level,
            keys,
            init_keys,
            scale,
            ui,
            buffer_capacity=buffer_capacity,
            credit=credit,
            heartbeat_ms=heartbeat_ms,
        )
    )


if __name__ == "__main__":
    main(prog_name=os.environ.pop("PIPELOGIC_BROKER_PROG", None) or "python -m backend_stub")
