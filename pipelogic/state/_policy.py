"""When a worker snapshots its state: every tick, every N ticks, every T seconds.

Written in pipeline.yml (``snapshot:`` on a vertex, or under ``settings:``) or in the
environment (``PIPELOGIC_SNAPSHOT``), as text or a mapping::

    snapshot: tick                  # after every tick
    snapshot: 500 ticks             # or "ticks:500"
    snapshot: 2 s                   # or "seconds:2", "2s"
    snapshot: {every_ticks: 500, every_seconds: 2}   # whichever comes first
    snapshot: off                   # only on a graceful stop (state since then replays)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_POLICY", "SnapshotPolicy"]

_TICKS = re.compile(r"^(?:ticks?:\s*(\d+)|(\d+)\s*ticks?)$")
_SECONDS = re.compile(r"^(?:seconds?:\s*([\d.]+)|([\d.]+)\s*(?:s|sec|seconds?))$")


@dataclass(frozen=True)
class SnapshotPolicy:
    """Snapshot after ``every_ticks`` ticks or ``every_seconds`` seconds since the last one,
    whichever comes first (None: that trigger is off; both None: only on stop)."""

    every_ticks: int | None = 1000
    every_seconds: float | None = 1.0

    def due(self, ticks: int, seconds: float) -> bool:
        if ticks <= 0:
            return False
        if self.every_ticks is not None and ticks >= self.every_ticks:
            return True
        return self.every_seconds is not None and seconds >= self.every_seconds

    def to_text(self) -> str:
        parts = []
        if self.every_ticks is not None:
            parts.append("tick" if self.every_ticks == 1 else f"{self.every_ticks} ticks")
        if self.every_seconds is not None:
            parts.append(f"{self.every_seconds:g} s")
        return " or ".join(parts) or "off"

    @classmethod
    def parse(cls, spec: Any, where: str = "snapshot") -> SnapshotPolicy:
        """Parse the forms in the module docstring; ValueError names ``where``."""
        if isinstance(spec, SnapshotPolicy):
            return spec
        if isinstance(spec, dict):
            unknown = set(spec) - {"every_ticks", "every_seconds"}
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; expected every_ticks, every_seconds")
            ticks, seconds = spec.get("every_ticks"), spec.get("every_seconds")
            if ticks is not None and (not isinstance(ticks, int) or isinstance(ticks, bool) or ticks < 1):
                raise ValueError(f"{where}.every_ticks: expected an integer >= 1, got {ticks!r}")
            if seconds is not None and (
                isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0
            ):
                raise ValueError(f"{where}.every_seconds: expected a number > 0, got {seconds!r}")
            return cls(ticks, float(seconds) if seconds is not None else None)
        if spec is False:
            return cls(None, None)
        if not isinstance(spec, str):
            raise ValueError(f"{where}: expected text like 'tick', '500 ticks', '2 s' or a mapping, got {spec!r}")
        policy: dict[str, Any] = {"every_ticks": None, "every_seconds": None}
        for part in re.split(r"\s+or\s+|,", spec.strip().lower()):
            part = part.strip()
            if part in ("off", "none", "never", "stop"):
                continue
            if part in ("tick", "every tick", "1 tick"):
                policy["every_ticks"] = 1
                continue
            m, s = _TICKS.match(part), _SECONDS.match(part)
            if m and int(m.group(1) or m.group(2)) >= 1:
                policy["every_ticks"] = int(m.group(1) or m.group(2))
            elif s and float(s.group(1) or s.group(2)) > 0:
                policy["every_seconds"] = float(s.group(1) or s.group(2))
            else:
                raise ValueError(
                    f"{where}: cannot read {part!r}; expected 'tick', 'N ticks', 'T s', 'off' "
                    "(or several joined with 'or')"
                )
        return cls(**policy)


DEFAULT_POLICY = SnapshotPolicy()
