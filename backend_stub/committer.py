"""The broker's group commit: what moved goes to the recovery store at most every
``commit_ms``, at once when durable actions wait (Applied, the end of a vertex, config
replies), which are carried out only after it. A failing store (disk full, read-only) is
retried with backoff, one log line per streak, while the pipeline waits; nothing committed
is lost.

A commit that spilled large frames waits longer before the next: about nine times what it
took (at most :data:`MAX_GAP_S`). Any commit writes the frames in flight at its moment, and
at one frame in flight per edge there always are some: with commits every 25 ms a 1080p
stream spent most of the broker's time writing and fsyncing frames that were consumed
milliseconds later (24 frames/s against 217 without a store). Spacing commits by their
cost keeps the disk's share of the loop near a tenth, and the frames consumed in between
never reach it. Nothing a crash may lose changes: what was not committed is redone after a
restart as before (docs/semantics.md), only more of it, and durable answers still force a
commit at once."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from backend_stub.model import Action
from backend_stub.recovery import low_water
from backend_stub.scheduler import Scheduler
from backend_stub.store import RecoveryStore
from pipelogic import _faults
from pipelogic.errors import SlotLost

__all__ = ["DUTY", "MAX_GAP_S", "Committer"]

DUTY = 9.0
"""After a commit that spilled frames, wait this many times what it took before the next."""
MAX_GAP_S = 2.0
"""...but never longer than this: the most a broker crash makes the pipeline redo."""

log = logging.getLogger("backend_stub")


class Committer:
    """Commits ``scheduler``'s run to ``store``; ``carry_out(actions)`` runs the durable
    actions held for the commit once it is done."""

    def __init__(
        self,
        store: RecoveryStore,
        scheduler: Scheduler,
        commit_s: float,
        carry_out: Callable[[list[Action]], None],
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.commit_s = commit_s
        self.carry_out = carry_out
        self.held: list[Action] = []  # durable actions waiting for the next commit
        self.events = 0  # messages handled since the last commit
        self.last = 0.0  # when the last commit was
        self.gap = commit_s  # the least time from the last commit to the next (see DUTY)
        self.trimmed = 0.0  # when the journal last let go of released messages
        self.retry_at = 0.0  # after a failed commit: not before this (0: the store is fine)
        self.failures = 0  # failed commits in a row
        self.error: str | None = None  # the last failure, shown by status

    @property
    def blocked(self) -> bool:
        """The store cannot commit: nothing new may move until it can."""
        return self.retry_at != 0.0

    def commit(self, now: float, final: bool = False) -> bool:
        """Commit if due (``final``: now, whatever is pending); True if the store holds
        everything that moved."""
        journal = self.scheduler.journal
        pending = bool(self.held or self.events or journal)
        if not pending and not final:
            return True
        if not final and (now < self.retry_at or (not self.held and now - self.last < self.gap)):
            if journal and self.gap > self.commit_s and now - self.trimmed >= self.commit_s:
                self.trimmed = now
                journal.trim(low_water(self.scheduler.vertices))
            return False
        spilled = self.store.spill.written
        started = time.perf_counter()
        try:
            self.store.commit(self.scheduler)
        except SlotLost as exc:  # a value to spill is gone: retrying cannot bring it back
            self.scheduler._fail(str(exc))
            return False
        except (OSError, sqlite3.Error) as exc:
            self.failures += 1
            delay = min(0.1 * 2 ** (self.failures - 1), 2.0)
            self.retry_at = now + delay
            self.error = f"{type(exc).__name__}: {exc}"
            if self.failures == 1:
                log.error(
                    "broker: cannot write its recovery store %s (%s); the pipeline waits and retries with backoff",
                    self.store.dir,
                    exc,
                )
            return False
        if self.failures:
            log.warning(
                "broker: the recovery store %s is writable again after %d failed commit(s); going on",
                self.store.dir,
                self.failures,
            )
        self.failures = 0
        self.retry_at = 0.0
        self.error = None
        self.events = 0
        self.last = now
        took = time.perf_counter() - started
        spilled_now = self.store.spill.written != spilled
        self.gap = min(MAX_GAP_S, max(self.commit_s, took * (1 + DUTY))) if spilled_now else self.commit_s
        held, self.held = self.held, []
        self.carry_out(held)
        _faults.point("broker-after-durable-sends")
        return True
