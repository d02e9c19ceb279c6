"""A stateful worker's durable state: when a snapshot is due, loading the newest one of
this run, and writing one — only after the broker confirmed that it holds the results of
every tick the state reflects, and reported only once it is durable (docs/semantics.md,
"State and recovery").

A disk that refuses a write (full, read-only) does not stop the worker at once: it holds
(no new ticks: the write happens in the tick loop), says so in one line, retries with
backoff, and gives up (StateError, exit 1) only after ``storage_retry_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pipelogic import _faults
from pipelogic.errors import SnapshotValueError, StateError
from pipelogic.state import DEFAULT_POLICY, Snapshot, SnapshotPolicy, SnapshotStore

__all__ = ["Snapshots"]

log = logging.getLogger("pipelogic.worker")


class Snapshots:
    """The snapshot bookkeeping of one worker process (across its rejoins)."""

    def __init__(self, store: SnapshotStore, vertex: str, storage_retry_s: float) -> None:
        self.store = store
        self.vertex = vertex
        self.storage_retry_s = storage_retry_s
        self.policy = SnapshotPolicy.parse(DEFAULT_POLICY, "snapshot policy")
        self.tick = 0  # the newest snapshot reflects every tick below this
        self.time = time.monotonic()
        self.count = 0
        self._fails = 0  # unconfirmed snapshots in a row
        self._retry_at = 0.0  # after an unconfirmed snapshot: not before this

    def due(self, next_tick: int) -> bool:
        now = time.monotonic()
        return now >= self._retry_at and self.policy.due(next_tick - self.tick, now - self.time)

    def load(self, run_id: str) -> Snapshot | None:
        """The newest valid snapshot of run ``run_id``; snapshots of another run are removed."""
        self.tick = 0
        snap = self.store.load()
        if snap is not None and snap.run != run_id:
            log.info("vertex %s: removing snapshots of an earlier pipeline run", self.vertex)
            self.store.reset()
            return None
        if snap is not None:
            self.tick = snap.tick
        return snap

    def take(
        self,
        tick: int,
        data: bytes,
        run_id: str,
        meta: dict[str, Any],
        confirm: Callable[[int], bool],
        report: Callable[[int], None],
        interrupted: Callable[[], bool],
    ) -> bool:
        """Write the packed state ``data`` reaching ``tick``: ``confirm(tick)`` first asks
        the broker (False: try again later, with backoff, not on every tick), then the write,
        then ``report(tick)``. True if a snapshot was committed."""
        if not confirm(tick):
            self._fails += 1
            self._retry_at = time.monotonic() + min(2.0**self._fails, 30.0)
            log.warning(
                "vertex %s: the broker did not confirm tick %d; no snapshot written (next try in %.0f s)",
                self.vertex,
                tick,
                self._retry_at - time.monotonic(),
            )
            return False
        self._fails = 0
        since, attempt = 0.0, 0
        while True:
            try:
                self.store.save(tick, data, run_id, meta)
                break
            except SnapshotValueError:
                raise
            except StateError as exc:
                attempt += 1
                since = since or time.monotonic()
                if not self._storage_wait(exc, since, attempt, interrupted):
                    return False
        if attempt:
            log.warning(
                "vertex %s: the state directory is writable again; snapshot at tick %d written", self.vertex, tick
            )
        _faults.point("after-dir-fsync-before-report")
        report(tick)
        _faults.point("after-report")
        self.tick = tick
        self.time = time.monotonic()
        self.count += 1
        return True

    def _storage_wait(self, exc: StateError, since: float, attempt: int, interrupted: Callable[[], bool]) -> bool:
        """After the ``attempt``-th failed write: wait before the next try (0.5 s doubling to
        10 s). False if ``interrupted()`` first; StateError once the failures have lasted
        ``storage_retry_s``."""
        waited = time.monotonic() - since
        limit = self.storage_retry_s
        if waited >= limit:
            raise StateError(
                f"{exc} (still failing after {waited:.0f} s; PIPELOGIC_STORAGE_RETRY_S={limit:g})"
            ) from exc
        if attempt == 1:  # one line per streak, not one per try
            log.error("%s; the worker holds (no new ticks) and retries with backoff for up to %g s", exc, limit)
        deadline = time.monotonic() + min(0.5 * 2 ** (attempt - 1), 10.0, limit - waited)
        while time.monotonic() < deadline:
            if interrupted():
                return False
            time.sleep(0.05)
        return True
