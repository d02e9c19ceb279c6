"""The broker's recovery store: one SQLite database (WAL mode, ``synchronous=FULL``) in
the broker's state directory, written by group commits.

Tables: ``meta`` (run id, the pipeline's description, incarnation, finished), ``vertex``
(each vertex's counters, :func:`backend_stub.recovery.vertex_record`), ``value`` (retained
messages of components' streams by stream and number: frames packed with msgpack, never
decoded, a large frame in a spill file written once, :mod:`backend_stub.spill`; a built-in
source's are made again on a restart, :class:`Regenerated`) and
``tick`` (the starts and virtual shift of each vertex's first retained tick and of the
ticks that do not follow from the one before, :func:`implied_starts`). A commit writes everything that changed since
the previous one in one transaction: file sinks are fsynced first, so a committed sink
offset never points past durable data.

One broker per store: an exclusive ``flock`` on ``LOCK`` is taken before anything else
(a second ``pipelogic up`` on the same pipeline is refused, and cannot truncate a sink the
first one writes).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgpack

from backend_stub import deadletter
from backend_stub.builtins import make_source
from backend_stub.model import Inflight, Journal, Settings, implied_starts
from backend_stub.recovery import Regenerated, apply_record, describe, diff, low_water, rebuild, vertex_record
from backend_stub.scheduler import Scheduler
from backend_stub.spill import Spill
from backend_stub.vertices import ComponentVertex, SinkVertex, SourceVertex
from pipelogic import _faults
from pipelogic.errors import StateError, StateLocked
from pipelogic.pipeline import Pipeline

__all__ = ["STORE_DIR", "RecoveryStore", "StoredRun", "open_run"]

UNSAFE = os.environ.get("PIPELOGIC_BROKER_STORE") == "unsafe"
"""A control setting for tests only: acknowledge before committing and keep uncommitted sink
tails, so the broker-kill chaos test can show that it detects what the discipline prevents."""

STORE_DIR = ".broker"
"""The store's folder inside the state directory (vertex names cannot start with a dot)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS vertex (name TEXT PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS value (stream TEXT NOT NULL, seq INTEGER NOT NULL, frames BLOB NOT NULL,
                                  PRIMARY KEY (stream, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tick (vertex TEXT NOT NULL, tick INTEGER NOT NULL, entry BLOB NOT NULL,
                                 PRIMARY KEY (vertex, tick)) WITHOUT ROWID;
"""


def _pack(x: Any) -> bytes:
    packed: bytes = msgpack.packb(x, use_bin_type=True)
    return packed


def _unpack(b: bytes) -> Any:
    return msgpack.unpackb(b, raw=False, strict_map_key=False)


class StoredRun:
    """The meta data of the run a store holds."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.run: str = meta.get("run", "")
        self.description: dict[str, Any] = meta.get("description", {})
        self.finished: bool = bool(meta.get("finished", False))
        self.incarnation: int = int(meta.get("incarnation", 0))
        # The broker start that began this run (a store from before it was kept: 1).
        self.first_incarnation: int = int(meta.get("first_incarnation", 1))


class RecoveryStore:
    """Open (and lock) the store in ``directory``."""

    FILE = "recovery.sqlite3"

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(self._lock_fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateLocked(
                    f"the broker store {self.dir} is in use by another broker (pid {holder}): is "
                    "`pipelogic up` already running this pipeline? (--state-dir picks another store)"
                ) from None
            raise
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, str(os.getpid()).encode(), 0)
        try:
            self.db = sqlite3.connect(self.dir / self.FILE, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self.close()
            raise StateError(f"the broker store {self.dir / self.FILE} cannot be opened: {exc}") from None
        self._lows: dict[str, int] = {}
        self._bases: dict[str, tuple[int, int]] = {}
        self._kept: set[str] = set()  # the streams whose messages are kept here (set by begin, resume)
        self.commits = 0
        self.spill = Spill(self.dir / "frames")  # large frames, written once

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
            self.db = None  # type: ignore[assignment]
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- the run -------------------------------------------------------------------------------

    def stored(self) -> StoredRun | None:
        rows = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if "run" not in rows:
            return None
        return StoredRun({k: _unpack(v) for k, v in rows.items()})

    def begin(self, sch: Scheduler, description: dict[str, Any], incarnation: int) -> None:
        """Forget any earlier run and record this new one (committed at once)."""
        self._kept = _kept_streams(sch)
        self.db.execute("BEGIN IMMEDIATE")
        for table in ("meta", "vertex", "value", "tick"):
            self.db.execute(f"DELETE FROM {table}")
        self._put_meta(
            run=sch.run, description=description, incarnation=incarnation, finished=False, first_incarnation=incarnation
        )
        self.db.execute("COMMIT")
        self.spill.clear()
        self._lows.clear()
        self._bases.clear()
        self.commit(sch)

    def resume(self, sch: Scheduler, run: StoredRun, incarnation: int) -> None:
        """Rebuild ``sch`` (fresh from the same pipeline) as the store last committed it."""
        sch.run = run.run
        records = {name: _unpack(rec) for name, rec in self.db.execute("SELECT name, record FROM vertex")}
        for name, vs in sch.vertices.items():
            rec = records.get(name)
            if rec is not None:
                if UNSAFE and "sink" in rec and isinstance(vs, SinkVertex) and vs.sink.path is not None:
                    rec["sink"][0] = deadletter.size(vs.sink.path)  # the control: keep the tail
                apply_record(vs, rec)
                if "dead_letter" in rec:
                    sch.dead_letter_offsets[name] = rec["dead_letter"]
                    deadletter.cut_back(deadletter.dead_letter_path(sch.pipeline, vs), rec["dead_letter"])
        self._kept = _kept_streams(sch)
        values: dict[str, Mapping[int, tuple[Any, ...]]] = defaultdict(dict)
        for stream, seq, frames in self.db.execute("SELECT stream, seq, frames FROM value"):
            values[stream][seq] = self.spill.unpack_row(stream, seq, frames)  # type: ignore[index]  # a dict
        self.spill.sweep()
        for vs in sch.vertices.values():
            if isinstance(vs, SourceVertex):  # not kept: made again
                for stream in vs.stream_names:
                    values[stream] = Regenerated(functools.partial(make_source, sch.pipeline, vs.v))
        ticks: dict[str, list[tuple[int, list[list[int]], Any]]] = defaultdict(list)
        for vertex, tick, entry in self.db.execute("SELECT vertex, tick, entry FROM tick ORDER BY vertex, tick"):
            starts, extra = _unpack(entry)
            ticks[vertex].append((tick, starts, extra))
        rebuild(sch.vertices, values, ticks)
        self.db.execute("BEGIN IMMEDIATE")
        self._put_meta(incarnation=incarnation)
        self.db.execute("COMMIT")

    def finish(self) -> None:
        """The run is done: a later start begins a new one. What was kept for a restart
        (messages, ticks) is dropped and the file given back to the disk: a finished run
        is never resumed."""
        self.db.execute("BEGIN IMMEDIATE")
        self._put_meta(finished=True)
        self.db.execute("DELETE FROM value")
        self.db.execute("DELETE FROM tick")
        self.db.execute("COMMIT")
        self.spill.clear()
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.execute("VACUUM")
        except sqlite3.Error as exc:  # the run is finished either way; only disk space is at stake
            logging.getLogger("backend_stub").warning("broker: could not shrink %s: %s", self.dir / self.FILE, exc)

    def _put_meta(self, **items: Any) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [(k, _pack(v)) for k, v in items.items()]
        )

    # -- group commit --------------------------------------------------------------------------

    def commit(self, sch: Scheduler) -> None:
        """Make the scheduler's current state durable: new messages and ticks from its
        journal, every vertex's counters, released messages and ticks. Raises OSError or
        sqlite3.Error (nothing of this commit is then durable; call again)."""
        _faults.point("broker-before-commit")
        _faults.fail_point("commit")
        for vs in sch.vertices.values():
            if isinstance(vs, SinkVertex):
                vs.sink.sync()
        _faults.point("broker-after-sink-sync")
        journal = sch.journal
        db = self.db
        lows = low_water(sch.vertices)
        logs = _logging_vertices(sch)
        db.execute("BEGIN IMMEDIATE")
        try:
            if journal is not None:
                # What was released within this commit's window never reaches the disk.
                rows = []
                for stream, (first, values) in journal.values.items():
                    for i in range(max(0, lows[stream] - first), len(values)):
                        rows.append((stream, first + i, list(values[i])))
                db.executemany(
                    "INSERT OR REPLACE INTO value (stream, seq, frames) VALUES (?, ?, ?)", self.spill.pack_rows(rows)
                )
                db.executemany(
                    "INSERT OR REPLACE INTO tick (vertex, tick, entry) VALUES (?, ?, ?)",
                    [
                        _tick_row(name, inf)
                        for name, inf in journal.ticks
                        if logs[name].log_base <= inf.tick < logs[name].next_tick and not _implied(logs[name], inf)
                    ],
                )
            db.executemany(
                "INSERT OR REPLACE INTO vertex (name, record) VALUES (?, ?)",
                [
                    (name, _pack(vertex_record(vs, sch.dead_letter_offsets.get(name))))
                    for name, vs in sch.vertices.items()
                ],
            )
            for name, c in logs.items():
                bases = (c.log_base, c.next_tick)
                if self._bases.get(name) != bases:
                    # Trimmed below, and (a source's unused grants) dropped at the end.
                    db.execute("DELETE FROM tick WHERE vertex = ? AND (tick < ? OR tick >= ?)", (name, *bases))
                    if c.log:  # the first tick has a row: the ones after it follow from it
                        db.execute(
                            "INSERT OR REPLACE INTO tick (vertex, tick, entry) VALUES (?, ?, ?)",
                            _tick_row(name, c.log[0]),
                        )
            for stream, low in lows.items():
                if self._lows.get(stream, 0) < low and stream in self._kept:
                    db.execute("DELETE FROM value WHERE stream = ? AND seq < ?", (stream, low))
                    self.spill.release_below(stream, low)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.spill.committed()
        _faults.point("broker-after-commit")
        self._lows.update(lows)
        self._bases = {name: (c.log_base, c.next_tick) for name, c in logs.items()}
        if journal is not None:
            journal.clear()
        self.commits += 1


def _tick_row(name: str, inf: Inflight) -> tuple[str, int, bytes]:
    return (name, inf.tick, _pack([inf.starts, inf.extra]))


def _implied(c: ComponentVertex, inf: Inflight) -> bool:
    """Whether tick ``inf`` of ``c`` follows from the one before it (no row needed)."""
    if inf.extra is not None or inf.tick <= c.log_base:
        return False
    return inf.starts == implied_starts(c.entry(inf.tick - 1).starts)


def _kept_streams(sch: Scheduler) -> set[str]:
    """The streams whose messages the store keeps until their consumers are done with them."""
    return {stream for vs in sch.vertices.values() if vs.JOURNALED for stream in vs.stream_names}


def _logging_vertices(sch: Scheduler) -> dict[str, ComponentVertex]:
    """The vertices that log the ticks they form (components; built-ins form none)."""
    return {name: vs for name, vs in sch.vertices.items() if isinstance(vs, ComponentVertex)}


def open_run(
    pipeline: Pipeline,
    settings: Settings,
    state_dir: Path | None,
    fresh: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[Scheduler, RecoveryStore | None]:
    """The scheduler for this start of the broker and its store (None without a state
    directory: an in-memory broker). An unfinished run of the same pipeline is resumed; a
    finished one, or ``fresh``, starts a new run; an unfinished run of a changed pipeline
    is refused (StateError naming what changed)."""
    if state_dir is None:
        return Scheduler(pipeline, settings), None
    store = RecoveryStore(Path(state_dir) / STORE_DIR)
    try:
        stored = store.stored()
        description = describe(pipeline)
        incarnation = (stored.incarnation if stored is not None else 0) + 1
        resume = stored is not None and not stored.finished and not fresh
        if resume:
            assert stored is not None
            changes = diff(stored.description, description)
            if changes:
                raise StateError(
                    f"{store.dir}: the unfinished run {stored.run[:8]} was made by another version of "
                    f"this pipeline; changed: "
                    + "; ".join(changes)
                    + ". Start a fresh run (pipelogic up --fresh, pipelogic broker --fresh) to discard it."
                )
            sch = Scheduler(pipeline, settings, fresh=False)
            store.resume(sch, stored, incarnation)
            sch.run_start = stored.first_incarnation
            log(
                f"resuming run {stored.run[:8]} from {store.dir} (broker start {incarnation - sch.run_start + 1} "
                "of this run)"
            )
        else:
            sch = Scheduler(pipeline, settings)
            if stored is not None and stored.finished:
                log(f"the previous run {stored.run[:8]} finished; starting a new run")
            elif stored is not None:
                log(f"starting a fresh run: the unfinished run {stored.run[:8]} is discarded (--fresh)")
            store.begin(sch, description, incarnation)
            sch.run_start = incarnation
        sch.epoch_base(incarnation)
        sch.journal = Journal()
    except BaseException:
        store.close()
        raise
    return sch, store
