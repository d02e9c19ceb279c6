"""Built-in sources and sinks of pipeline.yml, run inside the broker.

A source hands out encoded values (``(frame,)`` tuples, exactly as a worker would send
them); a sink receives decoded values. Files are relative to the pipeline file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import msgpack

from pipelogic.errors import DefinitionError, PipelogicError, StateError
from pipelogic.jsonform import from_json, to_json
from pipelogic.pipeline import Pipeline, Vertex
from pipelogic.types import Type, codec_for

__all__ = ["Sink", "Source", "make_sink", "make_source"]

Value = tuple[Any, ...]


class Source:
    """Produces encoded values on demand; ``rate`` (messages/s) paces it."""

    def __init__(self, values: Iterator[Any], out_type: Type, rate: float | None = None, name: str = "") -> None:
        self._it = values
        self._codec = codec_for(out_type)
        self.rate = rate
        self.name = name
        self.produced = 0
        self.exhausted = False
        self._start: float | None = None

    def allowance(self, now: float) -> int:
        """How many values the rate allows right now (unbounded without a rate)."""
        if self.rate is None:
            return 1 << 30
        if self._start is None:
            self._start = now
        return max(0, int((now - self._start) * self.rate) + 1 - self.produced)

    def skip(self, n: int) -> None:
        """Pass over the first ``n`` values (a restarted broker resumes at its position)."""
        for _ in range(n):
            try:
                next(self._it)
            except StopIteration:
                self.exhausted = True
                break
            self.produced += 1

    def take(self, n: int) -> list[Value]:
        out: list[Value] = []
        for _ in range(n):
            try:
                v = next(self._it)
            except StopIteration:
                self.exhausted = True
                break
            bufs: list[Any] = []
            try:
                data = self._codec.enc(v, bufs)
            except PipelogicError as exc:
                raise DefinitionError(f"source {self.name}: value {self.produced}: {exc}") from None
            out.append((msgpack.packb(data, use_bin_type=True), *bufs))
            self.produced += 1
        return out


def _sequence(p: dict[str, Any]) -> Iterator[int]:
    start, step = int(p.get("start", 0)), int(p.get("step", 1))
    count = p.get("count")
    i = 0
    while count is None or i < count:
        yield start + i * step
        i += 1


def _jsonl(path: Path, t: Type, name: str) -> Iterator[Any]:
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield from_json(json.loads(line), t)
            except (ValueError, PipelogicError) as exc:
                raise DefinitionError(f"{path}:{lineno}: source {name}: {exc}") from None


def _msgpack_file(path: Path) -> Iterator[Any]:
    with path.open("rb") as f:
        yield from msgpack.Unpacker(f, raw=False, strict_map_key=True)


def make_source(pipeline: Pipeline, v: Vertex) -> Source:
    p = v.params
    kind = p["source"]
    t = v.output_types[0]
    rate = float(p["rate"]) if p.get("rate") else None
    if kind == "sequence":
        it: Iterator[Any] = _sequence(p)
    elif kind == "values":
        it = iter([from_json(x, t) for x in p["values"]])  # as in a jsonl file: Bytes as base64
    elif kind == "jsonl":
        it = _jsonl(pipeline.path(p["path"]), t, v.name)
    else:
        it = _msgpack_file(pipeline.path(p["path"]))
    return Source(it, t, rate, v.name)


class Sink:
    """Writes decoded values: ``jsonl`` and ``msgpack`` files (flushed as it goes, so a
    reader sees complete lines only), ``stdout``, ``null``, or ``memory`` (for tests).

    File sinks are exactly-once across broker restarts: ``offset`` is the size of the
    file after the last value written, the recovery store commits it (after
    :meth:`sync`), and :meth:`resume` truncates whatever was written after that commit."""

    def __init__(self, kind: str, path: Path | None, wire_type: Type, name: str) -> None:
        self.kind = kind
        self.name = name
        self.path = path
        self.codec = codec_for(wire_type)
        self.count = 0
        self.offset = 0
        self.values: list[Any] = []
        self._f: IO[bytes] | None = None
        self._dirty = False
        if kind in ("jsonl", "msgpack"):
            assert path is not None
            path.parent.mkdir(parents=True, exist_ok=True)
            # Not truncated here: a resumed run keeps what it committed (see resume()).
            self._f = path.open("r+b" if path.exists() else "wb")

    def resume(self, offset: int, count: int) -> None:
        """Continue after ``count`` values ending at byte ``offset``: a torn or
        uncommitted tail is cut off."""
        self.count = count
        if self._f is None:
            return
        size = os.fstat(self._f.fileno()).st_size
        if size < offset:
            raise StateError(
                f"sink {self.name}: {self.path} has {size} bytes, but the run had written {offset}: "
                "it was truncated or replaced; start a fresh run (--fresh)"
            )
        self._f.truncate(offset)
        self._f.seek(offset)
        self.offset = offset

    def write(self, values: list[Any]) -> None:
        if self.kind == "jsonl":
            assert self._f is not None
            data = "".join(json.dumps(to_json(v), separators=(",", ":")) + "\n" for v in values).encode()
            self._f.write(data)
            self._f.flush()
            self.offset += len(data)
            self._dirty = True
        elif self.kind == "msgpack":
            assert self._f is not None
            data = b"".join(msgpack.packb(to_json(v), use_bin_type=True) for v in values)
            self._f.write(data)
            self._f.flush()
            self.offset += len(data)
            self._dirty = True
        elif self.kind == "stdout":
            sys.stdout.write("".join(f"{self.name}: {json.dumps(to_json(v))}\n" for v in values))
            sys.stdout.flush()
        elif self.kind == "memory":
            self.values.extend(values)
        self.count += len(values)

    def sync(self) -> None:
        """Make what was written durable (before the store commits ``offset``)."""
        if self._f is not None and self._dirty:
            os.fsync(self._f.fileno())
            self._dirty = False

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def make_sink(pipeline: Pipeline, v: Vertex) -> Sink:
    kind = v.params["sink"]
    path = pipeline.path(v.params["path"]) if kind in ("jsonl", "msgpack") else None
    return Sink(kind, path, v.wire_types[0], v.name)

