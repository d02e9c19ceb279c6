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
from typing import Any, Protocol

from pipelogic import _faults
from pipelogic import protocol as P
from pipelogic.errors import SnapshotValueError, StateError
from pipelogic.state import DEFAULT_POLICY, Snapshot, SnapshotPolicy, SnapshotStore
from pipelogic.types import InputsPullRequest
from pipelogic.worker._step import Step

__all__ = ["Snapshots", "StateChannel"]

log = logging.getLogger("pipelogic.worker")


class StateChannel(Protocol):
    """What a snapshot needs from the session: its epoch, a send, the broker's confirmation."""

    epoch: int

    def send(self, msg: P.Message) -> None: ...

    def confirm(self, tick: int, timeout_s: float) -> bool:
        """Ask the broker whether it holds the results of every tick below ``tick``."""

    def interrupted(self) -> bool:
        """A stop request, or the broker gone: give up waiting."""


class Snapshots:
    """The snapshot bookkeeping of one worker process (across its rejoins)."""

    def __init__(self, store: SnapshotStore, vertex: str, storage_retry_s: float, locked_out: bool = False) -> None:
        self.store = store
        self.vertex = vertex
        self.storage_retry_s = storage_retry_s
        # One more instance of a replicated vertex, without the state directory's lock: it
        # never writes (the lock holder's state only).
        self.locked_out = locked_out
        self.policy = SnapshotPolicy.parse(DEFAULT_POLICY, "snapshot policy")
        self.tick = 0  # the newest snapshot reflects every tick below this
        self.time = time.monotonic()
        self.count = 0
        self.initial: bytes | None = None  # the packed initial state: a new run starts from it
        self._fails = 0  # unconfirmed snapshots in a row
        self._retry_at = 0.0  # after an unconfirmed snapshot: not before this

    def restore(
        self, step: Step, run_id: str, pull_request: InputsPullRequest | None
    ) -> tuple[int, InputsPullRequest | None]:
        """Load the newest valid snapshot of run ``run_id`` into ``step`` (else the initial
        state): the tick it reaches (0 for a fresh start) and the pull request it kept
        (else ``pull_request``)."""
        if self.initial is not None:
            step.load_state(self.initial, self.vertex)
        snap = self.load(run_id)
        if snap is None:
            return 0, pull_request
        step.load_state(snap.state, self.vertex)
        pr = snap.meta.get("pull_request")
        if pr is not None:
            pull_request = InputsPullRequest.from_wire(pr)
        log.info(
            "vertex %s: restored state at tick %d (snapshot generation %d)", self.vertex, snap.tick, snap.generation
        )
        return snap.tick, pull_request

    def snapshot(
        self,
        step: Step,
        tick: int,
        pull_request: InputsPullRequest | None,
        run_id: str,
        channel: StateChannel,
        timeout_s: float = 30.0,
    ) -> bool:
        """Write a snapshot of ``step``'s state reaching ``tick`` if it moved; True if one
        was committed. Raises StateError (or SnapshotValueError, after telling the broker:
        it fails the run) when the state cannot be written."""
        if tick <= self.tick or self.locked_out:
            return False
        try:
            data = step.pack_state(self.vertex)  # an unserialisable state fails here, first
        except SnapshotValueError as exc:
            # Permanent: a restart would run into it again. The broker fails the run with it.
            channel.send(P.Failed(channel.epoch, tick, f"{exc} (at the snapshot after tick {tick - 1})", "", True))
            exc.reported_to_broker = True
            raise
        meta = {"pull_request": pull_request.to_wire() if pull_request is not None else None}
        return self.take(
            tick,
            data,
            run_id,
            meta,
            confirm=lambda t: channel.confirm(t, timeout_s),
            report=lambda t: channel.send(P.Checkpoint(channel.epoch, t)),
            interrupted=channel.interrupted,
        )

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
