"""The ``pipelogic`` command line (also ``python -m pipelogic``)."""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import click
import yaml

from pipelogic.errors import DefinitionError, PipelogicError, SnapshotCorrupt
from pipelogic.transport import DEFAULT_BROKER

EXIT_SNAPSHOT_CORRUPT = 3

__all__ = ["main"]

_BROKER_HELP = "Broker control endpoint (default: $PIPELOGIC_BROKER, else tcp://127.0.0.1:5550)."


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipelogic")
def main() -> None:
    """Run, test and inspect Pipelogic components and pipelines locally."""


@main.command()
@click.argument("pipeline_file", type=click.Path(exists=True))
@click.option("--listen", default=DEFAULT_BROKER, show_default=True, help="Broker endpoint to bind (port 0: any free port).")
@click.option("--state-dir", type=click.Path(), default=None, help="State snapshots (default: .pipelogic/state beside the pipeline).")
@click.option("--max-restarts", type=int, default=5, show_default=True, help="Restarts of a crashed worker before the run fails.")
@click.option("--backoff-max", type=float, default=10.0, show_default=True, help="Longest wait before restarting a crashed worker (the wait doubles from 0.25 s).")
@click.option("--progress/--no-progress", default=None, help="Live progress (default: on a terminal).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Fail if the pipeline is not done within this many seconds.")
def up(pipeline_file: str, listen: str, state_dir: str | None, max_restarts: int, backoff_max: float,
       progress: bool | None, timeout_s: float | None) -> None:
    """Run PIPELINE_FILE: the broker plus one process per component, until drained."""
    from pipelogic.cli._up import Supervisor

    sup = Supervisor(Path(pipeline_file), listen, state_dir, max_restarts, progress, timeout_s, backoff_max)
    sys.exit(sup.run())


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("pipeline_file", type=click.Path(exists=True))
@click.option("--listen", default=DEFAULT_BROKER, show_default=True)
@click.pass_context
def broker(ctx: click.Context, pipeline_file: str, listen: str) -> None:
    """Run the broker stub alone (same as python -m backend_stub)."""
    args = [sys.executable, "-m", "backend_stub", pipeline_file, "--listen", listen, *ctx.args]
    os.execv(sys.executable, args)


@main.command()
@click.argument("component_dir", type=click.Path(exists=True, file_okay=False))
def worker(component_dir: str) -> None:
    """Run COMPONENT_DIR/src/main.py under the runtime (the container entry point).

    Exit codes: 0 done or stopped by SIGTERM (state snapshotted), 1 an error,
    3 every snapshot in the state directory is corrupt (it will not start from empty state),
    143 SIGTERM before the worker was serving."""
    cdir = Path(component_dir).resolve()
    main_py = cdir / "src" / "main.py"
    if not main_py.exists():
        raise click.ClickException(f"{main_py}: no such file (a component runs src/main.py)")
    os.environ["PIPELOGIC_COMPONENT_DIR"] = str(cdir)
    sys.path.insert(0, str(main_py.parent))
    sys.argv = [str(main_py)]
    from pipelogic.cli._signals import install_sigterm

    install_sigterm()
    try:
        runpy.run_path(str(main_py), run_name="__main__")
    except SnapshotCorrupt as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_SNAPSHOT_CORRUPT)
    except PipelogicError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("path", type=click.Path(exists=True))
def validate(path: str) -> None:
    """Check a component.yml or a pipeline.yml and report every problem."""
    from pipelogic.component import load_component
    from pipelogic.pipeline import load_pipeline

    p = Path(path)
    try:
        if p.is_dir():
            if (p / "component.yml").exists():
                spec = load_component(p)
                click.echo(f"ok: component {spec.name} ({p / 'component.yml'})")
                return
            p = p / "pipeline.yml"
        data = yaml.safe_load(p.read_text("utf-8")) if p.is_file() else None
        if isinstance(data, dict) and "components" in data:
            pl = load_pipeline(p)
            click.echo(f"ok: pipeline {pl.name}: {len(pl.vertices)} vertices ({p})")
            for name in pl.order:
                v = pl.vertices[name]
                for k, outs in enumerate(v.outputs):
                    if not outs and v.kind != "sink":
                        click.echo(f"warning: {p}: output {name}.{k} ({v.output_types[k]}) is not connected; its messages are dropped")
        else:
            spec = load_component(p)
            click.echo(f"ok: component {spec.name} ({p})")
    except DefinitionError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)


@main.command()
@click.option("--broker", "address", default=None, help=_BROKER_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
def status(address: str | None, as_json: bool) -> None:
    """Show the vertices of the running pipeline: state, ticks, queues, restarts, errors."""
    from pipelogic.cli._display import status_table
    from pipelogic.client import BrokerClient

    try:
        st = BrokerClient(address).status()
    except PipelogicError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"pipeline": st.pipeline, "state": st.state, "vertices": st.vertices, "streams": st.streams, "error": st.error}, indent=2))
        return
    click.echo(status_table(st))


@main.group()
def config() -> None:
    """Live configuration of running components."""


@config.command("set")
@click.argument("vertex")
@click.argument("assignments", nargs=-1, required=True)
@click.option("--broker", "address", default=None, help=_BROKER_HELP)
@click.option("--wait", "wait_s", type=float, default=5.0, show_default=True, help="Seconds to wait for the worker to apply it.")
def config_set(vertex: str, assignments: tuple[str, ...], address: str | None, wait_s: float) -> None:
    """Set config values: pipelogic config set VERTEX key=value ... (values are pipelang literals)."""
    from pipelogic.client import BrokerClient

    values = {}
    for a in assignments:
        if "=" not in a:
            raise click.BadParameter(f"expected key=value, got {a!r}", param_hint="ASSIGNMENTS")
        k, v = a.split("=", 1)
        values[k.strip()] = v
    try:
        reply = BrokerClient(address).config_set(vertex, values, wait_s)
    except PipelogicError as exc:
        raise click.ClickException(str(exc)) from None
    if not reply.ok:
        raise click.ClickException(reply.error or "refused")
    if reply.applied:
        click.echo(f"{vertex}: config version {reply.version} applied by the worker")
    else:
        click.echo(f"{vertex}: config version {reply.version} stored; {reply.error or 'no worker connected, applied when one connects'}")


@main.command()
@click.argument("name")
@click.option("--directory", "-d", type=click.Path(file_okay=False), default=".", show_default=True)
def init(name: str, directory: str) -> None:
    """Scaffold a component directory NAME with a test."""
    from pipelogic.cli._scaffold import scaffold

    try:
        path = scaffold(name, Path(directory))
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {path}: edit src/main.py, then run: python -m pytest {path / 'tests'}")
