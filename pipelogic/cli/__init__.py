"""The ``pipelogic`` command line (also ``python -m pipelogic``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from pipelogic.errors import ConfigError, DefinitionError, PipelogicError

__all__ = ["main"]

_BROKER_HELP = (
    "Broker control endpoint (default: $PIPELOGIC_BROKER, else the broker of --pipeline, else of the one "
    "pipeline running in this folder, else tcp://127.0.0.1:5550)."
)
_PIPELINE_HELP = "Find the broker of this running pipeline file (its state directory records the address)."


def _pipeline_option(f: Any) -> Any:
    return click.option(
        "--pipeline", "-p", "pipeline_file", type=click.Path(exists=True), default=None, help=_PIPELINE_HELP
    )(f)


def _address(address: str | None, pipeline_file: str | None) -> str:
    from pipelogic.runs import resolve_broker

    return resolve_broker(address, Path(pipeline_file) if pipeline_file else None)


EXIT_DEFINITION = 2


class _Cli(click.Group):
    """The one error path of every command: a bad definition file prints each problem as
    ``error: file:line:col: ...`` (exit 2), any other expected error one ``error:`` line
    (exit 1); no traceback unless ``--debug`` (or PIPELOGIC_DEBUG=1) asks for one."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DefinitionError as exc:
            if _debug():
                raise
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            ctx.exit(EXIT_DEFINITION)
        except PipelogicError as exc:
            if _debug():
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


def _debug() -> bool:
    return os.environ.get("PIPELOGIC_DEBUG", "") not in ("", "0")


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipelogic")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors (also PIPELOGIC_DEBUG=1).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Log level of this command and the processes it starts (also PIPELOGIC_LOG_LEVEL).",
)
def main(debug: bool, log_level: str | None) -> None:
    """Run, test and inspect Pipelogic components and pipelines locally."""
    # Through the environment, so the broker and workers a command starts inherit them.
    if debug:
        os.environ["PIPELOGIC_DEBUG"] = "1"
    if log_level:
        os.environ["PIPELOGIC_LOG_LEVEL"] = log_level


@main.command()
@click.argument("pipeline_file", type=click.Path(exists=True))
@click.option(
    "--listen",
    default="tcp://127.0.0.1:0",
    show_default=True,
    help="Broker endpoint to bind (port 0: a free port; status, tap and config set find it).",
)
@click.option(
    "--state-dir",
    type=click.Path(),
    default=None,
    help="The run's state: the broker's store and the snapshots (default: .pipelogic/<file stem>/ beside the "
    "pipeline; a relative path is from the current directory).",
)
@click.option(
    "--max-restarts", type=int, default=5, show_default=True, help="Restarts of a crashed worker before the run fails."
)
@click.option(
    "--backoff-max",
    type=float,
    default=10.0,
    show_default=True,
    help="Longest wait before restarting a crashed worker (the wait doubles from 0.25 s).",
)
@click.option("--progress/--no-progress", default=None, help="Live progress (default: on a terminal).")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    help="Fail if the pipeline is not done within this many seconds.",
)
@click.option("--fresh", is_flag=True, help="Discard an unfinished run of this pipeline and start anew.")
@click.option(
    "--metrics",
    default=None,
    metavar="HOST:PORT",
    help="The broker serves Prometheus metrics at http://HOST:PORT/metrics.",
)
@click.option(
    "--keys",
    type=click.Path(file_okay=False),
    default=None,
    help="CurveZMQ with the keys in this folder (made for the pipeline when missing).",
)
@click.option(
    "--scale",
    multiple=True,
    metavar="VERTEX=N",
    help="Run a stateless component vertex as N worker processes (overrides its replicas:).",
)
@click.option(
    "--ui",
    default=None,
    metavar="[HOST:]PORT",
    help="Serve the live web view at http://HOST:PORT/ (host 127.0.0.1 unless given; 0 picks a free port).",
)
def up(
    pipeline_file: str,
    listen: str,
    state_dir: str | None,
    max_restarts: int,
    backoff_max: float,
    progress: bool | None,
    timeout_s: float | None,
    fresh: bool,
    metrics: str | None,
    keys: str | None,
    scale: tuple[str, ...],
    ui: str | None,
) -> None:
    """Run PIPELINE_FILE: the broker plus one process per component (replicas: N or
    --scale VERTEX=N: N processes), until drained.

    An unfinished run of the same pipeline (interrupted, or killed) is continued from its
    state directory; a finished one starts anew."""
    from pipelogic.cli._up import Supervisor

    sup = Supervisor(
        Path(pipeline_file),
        listen,
        state_dir,
        max_restarts,
        progress,
        timeout_s,
        backoff_max,
        fresh,
        metrics,
        keys,
        scale,
        ui,
    )
    sys.exit(sup.run())


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
@click.pass_context
def broker(ctx: click.Context) -> None:
    """Run the broker stub alone (same as python -m backend_stub); --help lists its options."""
    # Everything, --help included, goes to the broker's own command line, which owns the
    # options (pipelogic never imports backend_stub); its usage line says `pipelogic broker`.
    os.environ["PIPELOGIC_BROKER_PROG"] = "pipelogic broker"
    os.execv(sys.executable, [sys.executable, "-m", "backend_stub", *ctx.args])


@main.command()
@click.argument("component_dir", type=click.Path(exists=True, file_okay=False))
def worker(component_dir: str) -> None:
    """Run COMPONENT_DIR/src/main.py under the runtime (the container entry point).

    Exit codes: 0 done or stopped by SIGTERM (state snapshotted), 1 an error while serving,
    2 the component failed to start (its code or definition is wrong: an import or syntax
    error, a bad signature, main.py not calling run; restarting would fail the same way),
    3 every snapshot in the state directory is corrupt (it will not start from empty
    state), 143 SIGTERM before the worker was serving. An error is printed once, with the
    user's frames only (--debug: the whole traceback)."""
    from pipelogic.cli._worker import run_component

    sys.exit(run_component(Path(component_dir)))


@main.command()
@click.argument("path", type=click.Path(exists=True))
def validate(path: str) -> None:
    """Check a component (component.yml and src/main.py) or a pipeline.yml and every
    component it uses; report every problem as file:line:column. Exit code 2 if any."""
    from pipelogic._yamlfile import load_yaml
    from pipelogic.cli._checks import static_problems
    from pipelogic.component import check_sources, parse_component
    from pipelogic.pipeline import components_of, parse_pipeline, source_problems

    p = Path(path)
    if p.is_dir():
        found = [p / n for n in ("component.yml", "pipeline.yml") if (p / n).is_file()]
        if not found:
            raise DefinitionError(
                f"{p}: neither component.yml nor pipeline.yml is here; "
                "give a component directory, a pipeline directory or a file"
            )
        p = found[0]
    data = load_yaml(p)
    is_pipeline = (isinstance(data, dict) and ("components" in data or "connections" in data)) or (
        p.name != "component.yml" and not (isinstance(data, dict) and "worker" in data)
    )
    if not is_pipeline:
        spec = parse_component(data, p.resolve())
        problems = check_sources(spec)
        errors, warnings = static_problems(spec) if not problems else ([], [])
        if problems or errors:
            raise DefinitionError(problems + errors)
        click.echo(f"ok: component {spec.name} ({p})")
        for w in warnings:
            click.echo(f"warning: {w}")
        return
    pl = parse_pipeline(data, p.resolve())
    problems = source_problems(pl)
    warnings = []
    if not problems:
        for comp in components_of(pl):
            errors, said = static_problems(comp)
            problems += errors
            warnings += said
    if problems:
        raise DefinitionError(problems)
    click.echo(f"ok: pipeline {pl.name}: {len(pl.vertices)} vertices ({p})")
    for w in warnings:
        click.echo(f"warning: {w}")
    for folder in pl.outside:
        click.echo(f"note: {p}: allow_paths_outside: reads and writes files in {folder}, outside the pipeline's folder")
    for name in pl.order:
        v = pl.vertices[name]
        for k, outs in enumerate(v.outputs):
            if not outs and v.kind != "sink":
                click.echo(
                    f"warning: {p}: output {name}.{k} ({v.output_types[k]}) is not connected; its messages are dropped"
                )


@main.command()
@click.argument("pipeline_arg", metavar="[PIPELINE_FILE]", required=False, type=click.Path(exists=True))
@click.option("--broker", "address", default=None, help=_BROKER_HELP)
@_pipeline_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
@click.option(
    "--watch",
    "-w",
    "watch",
    type=float,
    default=None,
    is_flag=False,
    flag_value=1.0,
    metavar="[SECONDS]",
    help="Redraw every SECONDS (default 1) until Ctrl-C.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds to wait for the broker's answer.",
)
def status(
    pipeline_arg: str | None,
    address: str | None,
    pipeline_file: str | None,
    as_json: bool,
    watch: float | None,
    timeout_s: float,
) -> None:
    """Show the vertices of the running pipeline: state, ticks, rate, queues, restarts,
    errors, losses, and any vertex that is stuck. Run beside pipelogic up it needs no
    flags; with several pipelines running in the folder, name one (PIPELINE_FILE)."""
    from pipelogic.cli._status import show_status

    sys.exit(show_status(_address(address, pipeline_arg or pipeline_file), as_json, watch, timeout_s))


@main.command("tap")
@click.argument("stream", metavar="VERTEX[.i]")
@click.option("--broker", "address", default=None, help=_BROKER_HELP)
@_pipeline_option
@click.option("--count", "-n", type=click.IntRange(min=1), default=None, help="Stop after N messages.")
@click.option("--raw", is_flag=True, help="Print each message's frames (base64) instead of its JSON form.")
@click.option(
    "--save",
    "save_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write each value's Image/DepthImage pictures to this folder as numbered PNG files.",
)
@click.option("--jpeg", is_flag=True, help="With --save: JPEG files instead of PNG (needs Pillow).")
def tap_command(
    stream: str,
    address: str | None,
    pipeline_file: str | None,
    count: int | None,
    raw: bool,
    save_dir: str | None,
    jpeg: bool,
) -> None:
    """Print the messages flowing on output stream VERTEX[.i] as JSON lines, live.

    With --save DIR, the pictures each value holds are written to DIR (000001.png, ...)
    and each line shows the value with long bytes by their size and the files written.

    The pipeline is neither slowed nor changed: a tap that cannot keep up loses messages
    (it says how many on stderr)."""
    from pipelogic.cli._tap import PictureSaver, tap

    if jpeg and save_dir is None:
        raise click.UsageError("--jpeg goes with --save DIR")
    if raw and save_dir is not None:
        raise click.UsageError("--raw and --save do not go together (--raw prints the undecoded frames)")
    saver = PictureSaver(Path(save_dir), jpeg) if save_dir is not None else None
    rc = tap(_address(address, pipeline_file), stream, count, raw, saver)
    if saver is not None:
        click.echo(f"tap: {saver.saved} picture(s) written to {save_dir}", err=True)
    sys.exit(rc)


@main.group()
def config() -> None:
    """Live configuration of running components."""


@config.command("set")
@click.argument("vertex")
@click.argument("assignments", nargs=-1, required=True)
@click.option("--broker", "address", default=None, help=_BROKER_HELP)
@_pipeline_option
@click.option(
    "--wait", "wait_s", type=float, default=5.0, show_default=True, help="Seconds to wait for the worker to apply it."
)
def config_set(
    vertex: str, assignments: tuple[str, ...], address: str | None, pipeline_file: str | None, wait_s: float
) -> None:
    """Set config values: pipelogic config set VERTEX key=value ... (values are pipelang literals)."""
    from pipelogic.client import BrokerClient

    values = {}
    for a in assignments:
        if "=" not in a:
            raise click.BadParameter(f"expected key=value, got {a!r}", param_hint="ASSIGNMENTS")
        k, v = a.split("=", 1)
        values[k.strip()] = v
    reply = BrokerClient(_address(address, pipeline_file), timeout_s=2.0).config_set(vertex, values, wait_s)
    if not reply.ok:
        raise ConfigError(f"{vertex}: {reply.error or 'refused'}")
    if reply.applied:
        click.echo(f"{vertex}: config version {reply.version} applied by the worker")
    else:
        click.echo(
            f"{vertex}: config version {reply.version} stored; {reply.error or 'no worker connected, applied when one connects'}"
        )


@main.command()
@click.argument("name")
@click.option("--directory", "-d", type=click.Path(file_okay=False), default=".", show_default=True)
def init(name: str, directory: str) -> None:
    """Scaffold a component directory NAME with a test."""
    from pipelogic.cli._scaffold import scaffold

    try:
        path = scaffold(name, Path(directory))
    except FileExistsError as exc:
        raise PipelogicError(str(exc)) from None
    import importlib.util

    # The test it wrote runs under pytest, which pipelogic itself does not need.
    install = "" if importlib.util.find_spec("pytest") else "python -m pip install pytest, then "
    click.echo(f"created {path}: edit src/main.py, then run: {install}python -m pytest {path / 'tests'}")


@main.command()
def health() -> None:
    """Exit 0 if this container's broker or worker beat recently (the image's HEALTHCHECK)."""
    from pipelogic import _health

    ok, reason = _health.check()
    click.echo(("healthy: " if ok else "unhealthy: ") + reason)
    sys.exit(0 if ok else 1)


def _add_groups() -> None:
    from pipelogic.cli._containers import compose, image
    from pipelogic.cli._keys import keys

    main.add_command(keys)
    main.add_command(compose)
    main.add_command(image)


_add_groups()
