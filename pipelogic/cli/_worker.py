"""``pipelogic worker COMPONENT_DIR``: run a component's main.py and report how it ended.

The exit code is the supervisor's policy input (``pipelogic up``, a container's restart
policy): 2 means the component cannot start as written, so restarting it is pointless.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path

import click

from pipelogic import _logging
from pipelogic._tracebacks import user_traceback
from pipelogic.component import load_component
from pipelogic.errors import (
    BrokerUnavailable,
    PipelogicError,
    SnapshotCorrupt,
    SnapshotValueError,
    StateError,
)

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_SNAPSHOT_CORRUPT", "EXIT_START", "run_component"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_START = 2
EXIT_SNAPSHOT_CORRUPT = 3

# Failures at start that may pass by themselves: the broker is not there yet, or the
# state directory is busy or briefly unwritable. Everything else before the first tick
# (the user's import, syntax or signature error, a refused handshake) repeats on restart.
_TRANSIENT = (BrokerUnavailable, StateError)


def _report(exc: BaseException, header: str = "") -> None:
    """One ``error:`` line naming the exception, then the user's frames (all frames with
    --debug); a pipelogic error's own message says where, so it comes first."""
    if os.environ.get("PIPELOGIC_DEBUG", "") not in ("", "0"):
        click.echo(f"error: {header}" + "".join(traceback.format_exception(exc)).rstrip(), err=True)
        return
    if isinstance(exc, PipelogicError):
        text = str(exc)
        if exc.__cause__ is not None:
            text += "\n" + user_traceback(exc.__cause__)
    else:
        text = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
        frames = user_traceback(exc).split("\n")
        # The user's frames without the exception line (already said first).
        body = [line for line in frames[1:-1]] if frames and frames[0].startswith("Traceback") else []
        if isinstance(exc, SyntaxError):
            body = []  # its text already shows file, line and the caret
        text += ("\n" + "\n".join(body)) if body else ""
    click.echo(f"error: {header}{text}", err=True)


def _cache_env(cdir: Path) -> None:
    """``worker.cache`` in component.yml (the platform keeps model caches across deploys):
    PIPELOGIC_CACHE_DIR is a folder kept across runs (given by the compose file, else
    ``.pipelogic/cache/<component>`` in the folder the worker runs in, the pipeline's under
    `up`), and the caches of common model libraries point into it unless already set."""
    try:
        spec = load_component(cdir)
    except PipelogicError:
        return  # the session reports it
    if not spec.cache:
        return
    folder = Path(os.environ.get("PIPELOGIC_CACHE_DIR") or Path(".pipelogic") / "cache" / spec.name).resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        click.echo(f"warning: worker.cache: cannot create {folder}: {exc}", err=True)
        return
    os.environ["PIPELOGIC_CACHE_DIR"] = str(folder)
    for var, sub in (("XDG_CACHE_HOME", "."), ("HF_HOME", "huggingface"), ("TORCH_HOME", "torch")):
        os.environ.setdefault(var, str(folder / sub))


def run_component(component_dir: Path) -> int:
    """Run ``component_dir/src/main.py`` as ``__main__``; return the exit code."""
    _logging.setup()
    cdir = component_dir.resolve()
    main_py = cdir / "src" / "main.py"
    if not main_py.exists():
        click.echo(
            f"error: {main_py}: no such file (a component runs src/main.py, which calls pipelogic.worker.run)", err=True
        )
        return EXIT_START
    os.environ["PIPELOGIC_COMPONENT_DIR"] = str(cdir)
    _cache_env(cdir)
    sys.path.insert(0, str(main_py.parent))
    sys.argv = [str(main_py)]
    from pipelogic.cli._signals import install_sigterm
    from pipelogic.worker import progress

    install_sigterm()
    try:
        runpy.run_path(str(main_py), run_name="__main__")
    except SnapshotCorrupt as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_SNAPSHOT_CORRUPT
    except SystemExit:
        raise
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001 - the user's code may raise anything
        started = progress.ticks > 0
        supervised = os.environ.get("PIPELOGIC_SUPERVISED") == "1"
        # A state that cannot be snapshotted fails again after any restart, even mid-run: no restart loop.
        transient = not isinstance(exc, SnapshotValueError) and (started or isinstance(exc, _TRANSIENT))
        if not (supervised and isinstance(exc, PipelogicError) and exc.reported_to_broker):
            # Under `pipelogic up` the broker's report of a failed tick is the one shown.
            _report(exc, "" if transient else "the component failed to start: ")
        return EXIT_ERROR if transient else EXIT_START
    if not progress.run_called:
        click.echo(
            f"error: {main_py} finished without calling pipelogic.worker.run(fn); "
            "a component's main.py calls it at module top level",
            err=True,
        )
        return EXIT_START
    return EXIT_OK
