"""Dead letters: the inputs of ticks a worker skipped (``on_error: skip``), one JSON line
each, in a file per vertex (``dead_letter:`` in pipeline.yml, else
``.pipelogic/dead-letter/VERTEX.jsonl`` beside the pipeline).

Like a file sink, the file is exactly-once across broker restarts: each append is made
durable at once (dead letters are rare) and its end offset is committed with the broker's
state; a restarted broker cuts the file back to the committed offset, and the replayed
tick writes its line again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import msgpack

from backend_stub.vertices import ComponentVertex, ReplicatedVertex, VertexState, WorkerVertex
from pipelogic import protocol as P
from pipelogic.errors import ProtocolError
from pipelogic.jsonform import to_json
from pipelogic.pipeline import Pipeline
from pipelogic.types import codec_for

__all__ = ["append", "checked_failure", "cut_back", "dead_letter_path", "dead_letter_record", "size"]

MAX_ERROR_CHARS = 16 * 1024
MAX_TRACEBACK_CHARS = 64 * 1024


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters cut]"


def checked_failure(vs: ComponentVertex, msg: P.Failed) -> P.Failed:
    """A worker's Failed, if it is possible (ProtocolError if not), with its error and
    traceback clipped: an error line and a traceback, not a disk's worth, whoever sent it.

    A failed tick is one in flight on that worker (instance); a fatal failure may also come
    after the last tick (a worker failing at the end of its stream names the tick after it)."""
    if isinstance(vs, ReplicatedVertex):
        inst = vs.instances[msg.epoch]
        if not (msg.tick in inst.assigned or (msg.fatal and not inst.assigned)):
            owed = f"it owes ticks {', '.join(map(str, list(inst.assigned)[:8]))}" if inst.assigned else "it owes none"
            raise ProtocolError(
                f"vertex {vs.name}: instance {inst.name} sent Failed for tick {msg.tick}, which is "
                f"not in flight on it ({owed})"
            )
    elif isinstance(vs, WorkerVertex) and not (
        vs.expect <= msg.tick < vs.sent or (msg.fatal and msg.tick == vs.sent == vs.expect)
    ):
        raise ProtocolError(
            f"vertex {vs.name}: Failed for tick {msg.tick}, which is not in flight "
            f"(ticks {vs.expect}..{vs.sent - 1} are)"
        )
    return P.Failed(
        msg.epoch, msg.tick, _clip(msg.error, MAX_ERROR_CHARS), _clip(msg.traceback, MAX_TRACEBACK_CHARS), msg.fatal
    )


def dead_letter_path(pipeline: Pipeline, vs: VertexState) -> Path:
    p = vs.v.params.get("dead_letter")
    return pipeline.path(p) if isinstance(p, str) else pipeline.path(f".pipelogic/dead-letter/{vs.name}.jsonl")


def dead_letter_record(vs: ComponentVertex, msg: P.Failed) -> dict[str, Any]:
    """The dead letter of a failed tick: its decoded inputs (from the broker's log), the
    error and the traceback."""
    inputs: list[Any] = []
    for inf in vs.log:
        if inf.tick == msg.tick:
            for j, values in enumerate(inf.composition):
                codec = codec_for(vs.v.wire_types[j])
                decoded = []
                for v in values:
                    try:
                        data = msgpack.unpackb(getattr(v[0], "bytes", v[0]), raw=False)
                        decoded.append(to_json(codec.dec(data, [getattr(b, "bytes", b) for b in v[1:]])))
                    except Exception:  # noqa: BLE001 - keep the raw form in a dead letter
                        decoded.append({"undecodable": True})
                inputs.append(decoded if vs.streaming else (decoded[0] if decoded else None))
    return {
        "vertex": vs.name,
        "tick": msg.tick,
        "error": msg.error,
        "traceback": msg.traceback,
        "inputs": inputs,
        "time": time.time(),
    }


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def append(path: Path, record: dict[str, Any]) -> int:
    """Append one line durably; returns the file's new size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write((json.dumps(record) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def cut_back(path: Path, offset: int) -> None:
    """Drop what was appended after ``offset`` (lines a broker restart will write again)."""
    if size(path) > offset:
        with path.open("r+b") as f:
            f.truncate(offset)
