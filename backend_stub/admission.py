"""Admission: whether a worker's Hello is for this pipeline (its vertex, ports and types,
one instance or several), what its Welcome tells it, how often a vertex may say Hello, and
the well-formed part of what workers report. Plain code: the scheduler calls it."""

from __future__ import annotations

from typing import Any, Literal

from backend_stub.model import Settings
from backend_stub.vertices import ComponentVertex, VertexState, WorkerVertex
from pipelogic import protocol as P
from pipelogic.errors import PipelogicError
from pipelogic.types import create_type, encode

__all__ = ["HelloLimiter", "clean_stats", "declared_types_differ", "hello_refusal", "welcome_fields"]

# The counters a worker reports (heartbeats, results); anything else is dropped, so that a
# malformed or hostile report can never break what reads them later (status, decisions).
_Counter = Literal["ticks", "virtual_dropped", "virtual_queued", "virtual_out_lost", "nothing_dropped"]
_COUNTERS: tuple[_Counter, ...] = (
    "ticks",
    "virtual_dropped",
    "virtual_queued",
    "virtual_out_lost",
    "nothing_dropped",
)


def clean_stats(stats: Any) -> P.WorkerStats:
    """The well-formed part of a worker's reported counters: non-negative 64-bit ints and
    booleans under the known names; everything else is left out."""
    out = P.WorkerStats()
    if not isinstance(stats, dict):
        return out
    for k in _COUNTERS:
        v = stats.get(k)
        if type(v) is int and 0 <= v < 2**63:
            out[k] = v
    if type(closed := stats.get("virtual_closed")) is bool:
        out["virtual_closed"] = closed
    return out


def declared_types_differ(vs: VertexState, types: list[Any] | None) -> str:
    """Why a worker's declared stream types are not its vertex's component's, or "".
    A worker started for the wrong vertex (PIPELOGIC_COMPONENT), or from another version of
    the component than the broker loaded, would otherwise fail later and obscurely."""
    comp = vs.v.component
    if types is None or comp is None:
        return ""
    if (
        len(types) != 2
        or not all(isinstance(side, list) for side in types)
        or not all(isinstance(t, str) for side in types for t in side)
    ):
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

    return (
        f"the worker's component.yml declares {show(got)}, but this vertex's component "
        f"({comp.file}) declares {show(want)}; is PIPELOGIC_COMPONENT the right vertex, "
        "and is the worker running the same version of the component?"
    )


def hello_refusal(
    vertices: dict[str, VertexState], vs: VertexState | None, msg: P.Hello, now: float, settings: Settings
) -> P.Refuse | None:
    """Why the worker saying ``msg`` cannot serve ``vs`` (its vertex, None if unknown), or
    None: a Hello that passes is a new incarnation of a one-instance vertex (fencing the
    old one) or one more instance (or a restart of one) of a replicated vertex."""
    if not isinstance(vs, ComponentVertex):
        known = ", ".join(n for n, x in vertices.items() if x.v.kind == "component")
        return P.Refuse(f"unknown vertex {msg.vertex!r}; this pipeline's components are: {known}")
    if msg.inputs != len(vs.v.inputs) or msg.outputs != len(vs.v.outputs):
        return P.Refuse(
            f"vertex {msg.vertex}: the worker declares {msg.inputs} input(s) and {msg.outputs} "
            f"output(s), the pipeline expects {len(vs.v.inputs)} and {len(vs.v.outputs)}"
        )
    mismatch = declared_types_differ(vs, msg.types)
    if mismatch:
        return P.Refuse(f"vertex {msg.vertex}: {mismatch}")
    if not isinstance(vs, WorkerVertex):
        return None  # replicated: one more instance, or a restart of one
    how = (
        f"to run it as several, declare `replicas: N` on it in pipeline.yml (or `pipelogic up --scale {msg.vertex}=N`)"
    )
    if msg.join:
        return P.Refuse(
            f"vertex {msg.vertex} runs as one instance and another worker holds its state directory; {how}",
            P.ONE_INSTANCE,
        )
    if (
        vs.epoch is not None
        and msg.host
        and vs.host
        and msg.host != vs.host
        and now - vs.last_seen <= settings.heartbeat_ms * settings.liveness / 1000
    ):
        # A second live instance, not a restart: fencing the first one would only make the
        # two take turns.
        return P.Refuse(
            f"vertex {msg.vertex} is already served by a live worker (pid {vs.pid} on host "
            f"{vs.host}) and runs as one instance; {how}, or scale it to 1"
        )
    return None


def welcome_fields(vs: ComponentVertex, settings: Settings, run: str, broker: str, snapshot: Any) -> dict[str, Any]:
    """What a Welcome tells the worker of ``vs`` besides its epoch and endpoints: wire
    types, config values, and the settings it runs by (``snapshot``: the pipeline's
    default policy)."""
    comp = vs.v.component
    assert comp is not None
    config = {k: encode(value, comp.config_schema[k].type)[0] for k, value in vs.v.config.items()}
    return {
        "input_types": [str(t) for t in vs.v.wire_types],
        "output_types": [str(t) for t in vs.v.output_types],
        "config": config,
        "config_version": vs.config_version,
        "heartbeat_ms": settings.heartbeat_ms,
        "settings": {
            "on_error": vs.v.on_error,
            "credit": vs.settings.credit,
            "run": run,
            "broker": broker,
            "liveness": settings.liveness,
            "applied": vs.applied,
            "snapshot": vs.v.snapshot or snapshot,
            **({"virtual_queue": vs.v.virtual_queue} if vs.v.virtual_queue else {}),
        },
    }


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
