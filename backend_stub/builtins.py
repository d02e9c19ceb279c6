"""Built-in sources and sinks of pipeline.yml, run inside the broker.

A source hands out encoded values (``(frame,)`` tuples, exactly as a worker would send
them); a sink receives decoded values. Files are relative to the pipeline file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import msgpack

from pipelogic import _faults
from pipelogic.errors import DefinitionError, PipelogicError, StateError
from pipelogic.jsonform import from_json, to_json
from pipelogic.pipeline import Pipeline, Vertex
from pipelogic.types import Type, codec_for

__all__ = ["Sink", "Source", "make_sink", "make_source"]

log = logging.getLogger("backend_stub")

Value = tuple[Any, ...]


class Source:
    """Produces encoded values on demand; ``rate`` (messages/s) paces it."""

    def __init__(
        self,
        values: Iterator[Any],
        out_type: Type,
        rate: float | None = None,
        name: str = "",
        seek: Callable[[int], tuple[Iterator[Any], int]] | None = None,
    ) -> None:
        self._it = values
        # seek(k): the values from the k-th on without making the ones before (a sequence, a
        # list), and how many there were before it (k, or fewer if the values end sooner).
        self._seek = seek
        self._codec = codec_for(out_type)
        self.rate = rate
        self.name = name
        self.produced = 0
        self.exhausted = False
        self._start: float | None = None
        self._base = 0  # values passed over by skip(): the rate's clock counts from there

    def allowance(self, now: float) -> int:
        """How many values the rate allows right now (unbounded without a rate)."""
        if self.rate is None:
            return 1 << 30
        if self._start is None:
            self._start = now
        return max(0, int((now - self._start) * self.rate) + 1 - (self.produced - self._base))

    def skip(self, n: int) -> None:
        """Pass over the first ``n`` values (a restarted broker resumes at its position).
        A rated source then goes on at its rate from there, not as if it had to earn the
        skipped values again (that stalled a source restarted at 30,000 for 30 s at 1000/s)."""
        if self._seek is not None and n > 0:
            self._it, reached = self._seek(self.produced + n)
            self.exhausted = self.exhausted or reached < self.produced + n
            self.produced, n = reached, 0
        for _ in range(n):
            try:
                next(self._it)
            except StopIteration:
                self.exhausted = True
                break
            self.produced += 1
        self._base = self.produced
        self._start = None

    def pump(self, room: int, now: float) -> tuple[list[Value], str | None]:
        """The values to emit now: at most ``room`` (what the consumers take) and what the
        rate allows; and why the run must fail, if a value cannot be made."""
        n = min(room, self.allowance(now))
        if n <= 0:
            return [], None
        try:
            return self.take(n), None
        except PipelogicError as exc:
            return [], str(exc)

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


def _sequence(p: dict[str, Any], i: int = 0) -> Iterator[int]:
    start, step = int(p.get("start", 0)), int(p.get("step", 1))
    count = p.get("count")
    while count is None or i < count:
        yield start + i * step
        i += 1


def _sequence_from(p: dict[str, Any], k: int) -> tuple[Iterator[int], int]:
    count = p.get("count")
    reached = k if count is None else min(k, int(count))
    return _sequence(p, reached), reached


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
    seek: Callable[[int], tuple[Iterator[Any], int]] | None = None
    if kind == "sequence":
        it: Iterator[Any] = _sequence(p)
        seek = functools.partial(_sequence_from, p)
    elif kind == "values":
        values = [from_json(x, t) for x in p["values"]]  # as in a jsonl file: Bytes as base64
        it = iter(values)
        seek = lambda k: (iter(values[k:]), min(k, len(values)))  # noqa: E731
    elif kind == "jsonl":
        it = _jsonl(pipeline.path(p["path"]), t, v.name)
    else:
        it = _msgpack_file(pipeline.path(p["path"]))
    return Source(it, t, rate, v.name, seek)


class Sink:
    """Writes decoded values: ``jsonl`` and ``msgpack`` files (written as it goes, so a
    reader sees complete lines only), ``stdout``, ``null``, or ``memory`` (for tests).

    File sinks are exactly-once across broker restarts: ``offset`` is the size of the
    file after the last value written, the recovery store commits it (after
    :meth:`sync`), and :meth:`resume` truncates whatever was written after that commit.

    A write that fails (a full disk, a read-only or vanished folder) raises ``OSError``
    and changes nothing the run counts: ``offset`` stays where the last whole write ended,
    and whatever part of the failed write reached the file is cut off before the next
    write (and at :meth:`close`). The caller holds the values and retries: see
    :meth:`hold`. While the run holds its lock (:meth:`lock`), no other broker may write
    the file."""

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
        self._torn = False  # a failed write may have left bytes after ``offset``
        # While writes fail: when to try again, how many failed in this streak, and why.
        self.retry_at = 0.0
        self.failures = 0
        self.error: str | None = None
        if kind in ("jsonl", "msgpack"):
            assert path is not None
            path.parent.mkdir(parents=True, exist_ok=True)
            # Not truncated here: a resumed run keeps what it committed (see resume()).
            # Unbuffered: a failed write leaves nothing in a buffer that a later flush or
            # close would write out of place.
            self._f = path.open("r+b" if path.exists() else "wb", buffering=0)
            try:
                self.lock()  # before resume() may cut the file
            except BaseException:
                self.close()
                raise

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

    def encode(self, values: list[Any]) -> bytes:
        """The bytes ``values`` take in a file sink."""
        if self.kind == "jsonl":
            return "".join(json.dumps(to_json(v), separators=(",", ":")) + "\n" for v in values).encode()
        return b"".join(msgpack.packb(to_json(v), use_bin_type=True) for v in values)

    def pump(self, buf: Any, vertex: str, now: float) -> tuple[int, str | None]:
        """Write what ``buf`` (this sink's input buffer) holds: how many values went out,
        and why the run must fail, if it must. A file sink that cannot write (a full disk, a
        read-only folder) holds: its values stay queued, uncounted, and backpressure stops
        its producers until a retry (with backoff) goes through. Nothing is counted consumed
        before it is written; the store commits it only after the file is synced."""
        if buf.queue and self.kind == "null":  # nothing to write: no need to decode
            n = buf.clear()
            self.count += n
            buf.consumed += n
            return n, None
        if not buf.queue or now < self.retry_at:
            return 0, None
        decoded = []
        for v in buf.queue:
            try:
                data = msgpack.unpackb(getattr(v[0], "buffer", v[0]), raw=False, strict_map_key=True)
                decoded.append(self.codec.dec(data, [getattr(b, "buffer", b) for b in v[1:]]))
            except Exception as exc:  # noqa: BLE001 - a bad value fails the run, not the broker
                return 0, f"sink {vertex}: cannot decode a value: {exc}"
        try:
            self.write(decoded)
        except OSError as exc:
            if self.path is None:  # stdout: a closed pipe does not come back
                return 0, f"sink {vertex}: {exc}"
            if self.hold(exc, now):
                log.error(
                    "sink %s: cannot write %s (%s); the pipeline waits and retries with backoff; nothing is lost",
                    vertex,
                    self.path,
                    self.error,
                )
            return 0, None
        buf.consumed += buf.clear()
        if self.failures:
            log.warning(
                "sink %s: %s is writable again after %d failed write(s); going on",
                vertex,
                self.path,
                self.writable_again(),
            )
        return len(decoded), None

    def write(self, values: list[Any]) -> None:
        """Write ``values`` whole, or raise ``OSError`` having counted none of them."""
        if self._f is not None:
            data = self.encode(values)
            fd = self._f.fileno()
            if self._torn:  # cut what a failed write left, so this one lands right after ``offset``
                os.ftruncate(fd, self.offset)
                self._torn = False
            view = memoryview(data)
            done = 0
            try:
                _faults.fail_point("sink")
                while done < len(data):
                    done += os.pwrite(fd, view[done:], self.offset + done)
            except OSError:
                if done:
                    self._torn = True
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, self.offset)
                        self._torn = False
                raise
            self.offset += len(data)
            self._dirty = True
        elif self.kind == "stdout":
            sys.stdout.write("".join(f"{self.name}: {json.dumps(to_json(v))}\n" for v in values))
            sys.stdout.flush()
        elif self.kind == "memory":
            self.values.extend(values)
        self.count += len(values)

    def hold(self, exc: OSError, now: float) -> bool:
        """A write failed: back off (0.1 s doubling to 2 s) before the next try. True for the
        first failure of a streak (the one to log)."""
        self.failures += 1
        self.retry_at = now + min(0.1 * 2 ** (self.failures - 1), 2.0)
        self.error = f"{type(exc).__name__}: {exc.strerror or exc}"
        return self.failures == 1

    def writable_again(self) -> int:
        """A write went through: end a streak of failures; returns how many there were."""
        failures, self.failures, self.retry_at, self.error = self.failures, 0, 0.0, None
        return failures

    def sync(self) -> None:
        """Make what was written durable (before the store commits ``offset``)."""
        if self._f is not None and self._dirty:
            os.fsync(self._f.fileno())
            self._dirty = False

    def lock(self) -> None:
        """Take the file for this run: StateError if another broker writes it now (two
        pipelines writing one file would interleave their lines)."""
        if self._f is None:
            return
        try:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(self.path)
            raise StateError(
                f"sink {self.name}: {self.path} is being written by another running pipeline{holder}; "
                "give this sink another path, or stop the other run first"
            ) from None

    def close(self) -> None:
        """Close the file, cutting any tail a failed write left. Never raises: the values
        that count were written and synced before."""
        if self._f is not None:
            with contextlib.suppress(OSError):
                if self._torn:
                    os.ftruncate(self._f.fileno(), self.offset)
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None


def _lock_holder(path: Path | None) -> str:
    """``: pid N, <its command line>`` for the process that holds a flock on ``path``
    (from /proc/locks, so it names the other pipeline's file), or "" where that cannot be
    told (another pid namespace, not Linux)."""
    if path is None:
        return ""
    try:
        st = path.stat()
        with open("/proc/locks") as f:
            rows = f.read().splitlines()
    except OSError:
        return ""
    for row in rows:
        parts = row.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (a blocked waiter has "->")
        if len(parts) < 6 or parts[1] != "FLOCK" or "->" in parts:
            continue
        dev_ino = parts[5].split(":")
        if (
            len(dev_ino) == 3
            and dev_ino[2] == str(st.st_ino)
            and int(dev_ino[0], 16) == os.major(st.st_dev)
            and int(dev_ino[1], 16) == os.minor(st.st_dev)
        ):
            pid = parts[4]
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                cmd = ""
            return f" (pid {pid}{': ' + cmd if cmd else ''})"
    return ""


def make_sink(pipeline: Pipeline, v: Vertex) -> Sink:
    kind = v.params["sink"]
    path = pipeline.path(v.params["path"]) if kind in ("jsonl", "msgpack") else None
    return Sink(kind, path, v.wire_types[0], v.name)
