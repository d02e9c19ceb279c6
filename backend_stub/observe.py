"""What the broker tells operators beyond the scheduler's counters: rates, stuck vertices
and losses, computed from periodic samples (plain code: no sockets, no clock of its own).

The broker loop calls :meth:`Observer.sample` every turn (it keeps one sample per half
second) and :meth:`Observer.decorate` on every status request, so a one-shot
``pipelogic status`` shows a real rate without having to ask twice. A finished vertex's
mean rate is exact: the scheduler notes the loop turns where its count first and last
moved (:meth:`backend_stub.vertices.VertexState.moved`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from backend_stub.vertices import ComponentVertex, ReplicatedVertex, SinkVertex, VertexState, WorkerVertex
from pipelogic import protocol as P
from pipelogic.pipeline import Pipeline

__all__ = ["Observer", "status_of"]

SAMPLE_S = 0.5
WINDOW_S = 5.0


@dataclass
class Observer:
    samples: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)
    last_progress: dict[str, float] = field(default_factory=dict)
    _last_counts: dict[str, int] = field(default_factory=dict)
    # Progress is any instance finishing a tick, whether or not its result could be applied
    # yet (a replica's waits for an older tick of another): per vertex, and per instance.
    _last_done: dict[str, int] = field(default_factory=dict)
    _instance_done: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)  # ticks, since
    first_progress: dict[str, tuple[float, int]] = field(default_factory=dict)  # when it first moved, from
    checkpoint_at: dict[str, tuple[int, float]] = field(default_factory=dict)  # tick, when first seen
    _next: float = 0.0

    def sample(self, vertices: Mapping[str, VertexState], now: float) -> None:
        """Note each vertex's progress (at most every SAMPLE_S)."""
        if now < self._next:
            return
        self._next = now + SAMPLE_S
        counts = {name: vs.ticks for name, vs in vertices.items()}
        for name, c in counts.items():
            if self._last_counts.get(name) != c and name in self._last_counts:
                self.first_progress.setdefault(name, (self.samples[-1][0], self._last_counts[name]))
        self._last_counts = counts
        for name, vs in vertices.items():
            done = vs.ticks
            if isinstance(vs, ComponentVertex):
                done += int(vs.worker_stats.get("ticks", 0))  # done, maybe not sent yet
            if isinstance(vs, ReplicatedVertex):
                for i in vs.instances.values():
                    done += i.ticks
                    seen = self._instance_done.get((name, i.name))
                    if seen is None or seen[0] != i.ticks:
                        self._instance_done[(name, i.name)] = (i.ticks, now)
            if self._last_done.get(name) != done:
                self._last_done[name] = done
                self.last_progress[name] = now
        for name, vs in vertices.items():
            if (
                isinstance(vs, ComponentVertex)
                and vs.checkpoints
                and self.checkpoint_at.get(name, (None,))[0] != vs.checkpoints[-1]
            ):
                self.checkpoint_at[name] = (vs.checkpoints[-1], now)
        self.samples.append((now, counts))
        while len(self.samples) > 2 and now - self.samples[0][0] > WINDOW_S:
            self.samples.popleft()

    def rates(self) -> dict[str, float]:
        """Ticks (messages, for built-in sources and sinks) per second over the window."""
        if len(self.samples) < 2:
            return {}
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        if t1 <= t0:
            return {}
        return {name: max(0, c1[name] - c0.get(name, 0)) / (t1 - t0) for name in c1}

    def _lifetime_rate(self, name: str, ticks: int, vs: VertexState | None = None) -> float | None:
        """A finished vertex's mean rate while it was moving: from the loop turns where its
        count first and last moved (:meth:`VertexState.moved`), what came after the first
        over the time between; without those (it moved once, or no state is at hand), from
        the samples, None if they are under 1 s apart (too coarse to say)."""
        if vs is not None and vs.first_moved is not None:
            t0, c0 = vs.first_moved
            if vs.last_moved > t0 and ticks > c0:
                return (ticks - c0) / (vs.last_moved - t0)
        first, last = self.first_progress.get(name), self.last_progress.get(name)
        if first is None or last is None or last - first[0] < 1.0:
            return None
        return (ticks - first[1]) / (last - first[0])

    def decorate(
        self, st: P.StatusReply, now: float, bound: float, states: Mapping[str, VertexState] | None = None
    ) -> P.StatusReply:
        """The scheduler's status with ``rate``, ``stuck_s`` and ``lost`` per vertex
        (``states``: the scheduler's vertex states, for a finished vertex's exact mean rate).

        A vertex is stuck when it has work (input queued or ticks in flight) and none of its
        instances has finished a tick for longer than ``bound``, the liveness bound in
        seconds (heartbeat x liveness); ``stuck_pids`` then names the instances that hold
        ticks (a replicated vertex's idle instances are not to blame)."""
        rates = self.rates()
        vertices: list[P.VertexStatus] = []
        for v in st.vertices:
            name = v["name"]
            busy = sum(v["queues"]) > 0 or v["inflight"] > 0
            idle = now - self.last_progress.get(name, now)
            stuck = (
                idle
                if (
                    busy
                    and v["kind"] == "component"
                    and v["state"] in ("running", "connected")
                    and idle > bound
                    and st.state == "running"
                )
                else 0.0
            )
            cp = self.checkpoint_at.get(name)
            rate = rates.get(name, 0.0) if rates else None
            if v["state"] == "finished":
                rate = self._lifetime_rate(name, v["ticks"], states.get(name) if states is not None else None)
            d = v.copy()
            d["rate"] = round(rate, 3) if rate is not None else None
            d["stuck_s"] = round(stuck, 1)
            if stuck and "instances" in v:
                d["stuck_pids"] = [
                    i["pid"] or 0
                    for i in v["instances"]
                    if i["inflight"] > 0 and now - self._instance_done.get((name, i["instance"]), (0, now))[1] > bound
                ]
            d["lost"] = P.losses(v)
            d["snapshot_age_s"] = round(now - cp[1], 1) if cp is not None else None
            vertices.append(d)
        return replace(st, vertices=vertices)


def vertex_status(vs: VertexState) -> P.VertexStatus:
    """One vertex's state and counters (a built-in one has no worker: those count 0)."""
    v = vs.v
    st = P.VertexStatus(
        name=vs.name,
        kind=v.kind if v.kind == "component" else f"{v.kind}:{v.builtin}",
        state=vs.state(),
        ticks=vs.ticks,
        inflight=vs.outstanding,
        applied=0,
        retained=0,
        duplicates=0,
        replayed=0,
        checkpoint=None,
        queues=[len(b.queue) for b in vs.inputs],
        max_queues=[b.max_len for b in vs.inputs],
        restarts=0,
        errors=0,
        pid=0,
        host="",
        epoch=0,
        virtual_dropped=0,
        virtual_out_lost=0,
        nothing_dropped=0,
        virtual_queued=0,
        config_version=0,
        dropped_at_end=0,
        dead_lettered=0,
    )
    if vs.inputs:
        st["input_bytes"] = [b.bytes_in for b in vs.inputs]
        st["queue_bytes"] = [b.nbytes for b in vs.inputs]
    if isinstance(vs, SinkVertex):
        st["latency_seconds"] = vs.latency.status()
        if vs.sink.error is not None:
            st["blocked"] = f"cannot write {vs.sink.path}: {vs.sink.error}"
    if not isinstance(vs, ComponentVertex):
        return st
    st["tick_seconds"] = vs.pace.times.status()
    stats = vs.worker_stats
    st.update(
        {
            "applied": vs.applied,
            "retained": len(vs.log),
            "duplicates": vs.duplicates,
            "replayed": vs.replayed,
            "checkpoint": vs.checkpoints[-1] if vs.checkpoints else None,
            "restarts": vs.restarts,
            "errors": vs.errors,
            "pid": vs.pid,
            "host": vs.host,
            "virtual_dropped": int(stats.get("virtual_dropped", 0)),
            "virtual_out_lost": int(stats.get("virtual_out_lost", 0)),
            "nothing_dropped": int(stats.get("nothing_dropped", 0)),
            "virtual_queued": int(stats.get("virtual_queued", 0)),
            "config_version": vs.config_version,
            "dropped_at_end": vs.dropped_at_end,
            "dead_lettered": vs.dead_lettered,
        }
    )
    if isinstance(vs, WorkerVertex):
        st["epoch"] = vs.epoch or 0
    elif isinstance(vs, ReplicatedVertex):
        st["replicas"] = v.replicas
        st["lost_pids"] = list(vs.lost_pids)
        st["instances"] = [
            P.InstanceStatus(
                instance=i.name,
                epoch=e,
                pid=i.pid,
                host=i.host,
                state="closed" if i.closed else ("running" if i.ready else "connected"),
                inflight=len(i.assigned),
                ticks=i.ticks,
                tick_seconds=i.pace.times.status(),
            )
            for e, i in sorted(vs.instances.items())
        ]
    return st


def status_of(pipeline: Pipeline, states: Mapping[str, VertexState], failed: str | None, done: bool) -> P.StatusReply:
    """A run's status: per vertex its state and counters, per stream its count."""
    vertices = [vertex_status(states[name]) for name in pipeline.order]
    streams: list[P.StreamStatus] = []
    for name in pipeline.order:
        vs = states[name]
        for k, consumers in enumerate(vs.consumers):
            to = [f"{c}.{j}" for c, j in consumers]
            streams.append({"from": f"{name}.{k}", "to": to, "count": vs.out_counts[k]})
    state = "failed" if failed else ("done" if done else "running")
    return P.StatusReply(pipeline.name, state, vertices, streams, failed)
