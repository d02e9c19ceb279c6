"""Admission checks on a worker's Hello that are about what it is, not where it is."""

from __future__ import annotations

from typing import Any

from backend_stub.model import VertexState
from pipelogic.errors import PipelogicError
from pipelogic.types import create_type

__all__ = ["HelloLimiter", "clean_stats", "declared_types_differ"]

# The counters a worker reports (heartbeats, results); anything else is dropped, so that a
# malformed or hostile report can never break what reads them later (status, decisions).
_COUNTERS = ("ticks", "virtual_dropped", "virtual_queued", "virtual_out_lost", "nothing_dropped")
_FLAGS = ("virtual_closed",)


def clean_stats(stats: Any) -> dict[str, Any]:
    """The well-formed part of a worker's reported counters: non-negative 64-bit ints and
    booleans under the known names; everything else is left out."""
    if not isinstance(stats, dict):
        return {}
    out: dict[str, Any] = {}
    for k in _COUNTERS:
        v = stats.get(k)
        if type(v) is int and 0 <= v < 2**63:
            out[k] = v
    for k in _FLAGS:
        v = stats.get(k)
        if type(v) is bool:
            out[k] = v
    return out


def declared_types_differ(vs: VertexState, types: list[Any] | None) -> str:
    """Why a worker's declared stream types are not its vertex's component's, or "".
    A worker started for the wrong vertex (PIPELOGIC_COMPONENT), or from another version of
    the component than the broker loaded, would otherwise fail later and obscurely."""
    comp = vs.v.component
    if types is None or comp is None:
        return ""
    if (len(types) != 2 or not all(isinstance(side, list) for side in types)
            or not all(isinstance(t, str) for side in types for t in side)):
        return f"the worker's declared types are malformed: {types!r:.200}"
    try:
        got = [[str(create_type(t)) for t in side] for side in types]
    except PipelogicError as exc:
        return f"the worker declares a type the broker cannot read: {exc}"
    want = [[str(t) for t in comp.input_types], [str(t) for t in comp.output_types]]
    if got == want:
        return ""

    def show(sides: list[list[str]]) -> str:
        return f"inputs ({', '.join(sides[0])}) -> outputs ({', '.join(sides[1])})"

    return (f"the worker's component.yml declares {show(got)}, but this vertex's component "
            f"({comp.file}) declares {show(want)}; is PIPELOGIC_COMPONENT the right vertex, "
            "and is the worker running the same version of the component?")


class HelloLimiter:
    """At most ``rate`` handshakes per second per vertex (a bucket of ``burst``): each one
    fences the vertex's worker and binds a socket, so a flood of them must not thrash a
    vertex or the broker. Names that are not vertices share one bucket."""

    def __init__(self, vertices: list[str], rate: float = 5.0, burst: float = 10.0) -> None:
        self.rate = rate
        self.burst = burst
        self._known = set(vertices)
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def allow(self, vertex: str, now: float) -> bool:
        key = vertex if vertex in self._known else ""
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True
