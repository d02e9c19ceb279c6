"""Where a pipeline's run lives and where its running broker is found.

Every pipeline file has a state directory of its own, ``.pipelogic/<file stem>/`` beside
it, so several pipelines in one folder never share a run. A broker with a state directory
writes its addresses there (``broker.json``) once it listens and removes the file when it
exits; ``status``, ``tap`` and ``config set`` read it, so they work beside a running
``pipelogic up`` with no flags, however many pipelines run on the machine (``up`` listens on
a free port). The order: ``--broker``, else ``$PIPELOGIC_BROKER``, else the pipeline file
given, else the one live pipeline of the current folder, else the default address.

Plain file work: no socket is opened here.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipelogic.errors import PipelogicError

__all__ = [
    "ADDRESS_FILE",
    "DEFAULT_ADDRESS",
    "LiveBroker",
    "default_state_dir",
    "find_broker",
    "live_brokers",
    "remove_address",
    "resolve_broker",
    "write_address",
]

ADDRESS_FILE = "broker.json"
DEFAULT_ADDRESS = "tcp://127.0.0.1:5550"  # a standalone broker's (transport.DEFAULT_BROKER)


def default_state_dir(pipeline_file: Path) -> Path:
    """``.pipelogic/<file stem>/`` beside the pipeline file: one per pipeline file."""
    return pipeline_file.resolve().parent / ".pipelogic" / pipeline_file.stem


@dataclass(frozen=True)
class LiveBroker:
    endpoint: str
    pid: int
    pipeline: str  # the pipeline file it serves
    name: str  # the pipeline's name


def write_address(state_dir: Path, endpoint: str, pipeline_file: Path, name: str) -> Path:
    """Record this process's broker in ``state_dir`` (atomically: a reader sees the old
    file or the new one, never half of one)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / ADDRESS_FILE
    tmp = state_dir / f".{ADDRESS_FILE}.{os.getpid()}"
    tmp.write_text(
        json.dumps({"endpoint": endpoint, "pid": os.getpid(), "pipeline": str(pipeline_file.resolve()), "name": name})
        + "\n"
    )
    os.replace(tmp, target)
    return target


def remove_address(state_dir: Path) -> None:
    """Remove the address file if it is this process's (a restarted broker's may be newer)."""
    target = state_dir / ADDRESS_FILE
    live = _read(target)
    if live is not None and live.pid == os.getpid():
        with contextlib.suppress(OSError):
            target.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _read(path: Path) -> LiveBroker | None:
    try:
        d = json.loads(path.read_text())
        return LiveBroker(str(d["endpoint"]), int(d["pid"]), str(d["pipeline"]), str(d.get("name", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live_brokers(folder: Path) -> list[LiveBroker]:
    """The brokers of pipelines in ``folder`` that are running now (a file left by a
    killed broker names a dead pid and is ignored)."""
    found = []
    for f in sorted((folder / ".pipelogic").glob(f"*/{ADDRESS_FILE}")):
        live = _read(f)
        if live is not None and _alive(live.pid):
            found.append(live)
    return found


def find_broker(pipeline_file: Path | None = None, folder: Path | None = None) -> str | None:
    """The endpoint of the running broker of ``pipeline_file``, or of the one pipeline
    running in ``folder`` (default: the current folder); None if there is none.
    PipelogicError when the file's pipeline is not running, or several run in the folder."""
    if pipeline_file is not None and Path(pipeline_file).is_dir():
        folder, pipeline_file = Path(pipeline_file), None  # a pipeline's folder, given for its file
    if pipeline_file is not None:
        recorded = default_state_dir(pipeline_file) / ADDRESS_FILE
        live = _read(recorded)
        if live is None or not _alive(live.pid):
            raise PipelogicError(
                f"{pipeline_file}: this pipeline is not running here (no live broker recorded in "
                f"{recorded}); start it with `pipelogic up {pipeline_file}`, or give --broker"
            )
        return live.endpoint
    running = live_brokers(folder if folder is not None else Path.cwd())
    if not running:
        return None
    if len(running) > 1:
        listing = ", ".join(f"{Path(b.pipeline).name} ({b.endpoint})" for b in running)
        raise PipelogicError(
            f"{len(running)} pipelines run in this folder: {listing}; name one: "
            f"pipelogic status {Path(running[0].pipeline).name}, or --broker ADDRESS"
        )
    return running[0].endpoint


def resolve_broker(explicit: str | None, pipeline_file: Path | None = None) -> str:
    """``--broker``, else ``$PIPELOGIC_BROKER``, else the broker of ``pipeline_file`` or of
    the one pipeline running in the current folder, else the default address."""
    if explicit:
        return explicit
    if os.environ.get("PIPELOGIC_BROKER"):
        return os.environ["PIPELOGIC_BROKER"]
    return find_broker(pipeline_file) or DEFAULT_ADDRESS
