"""What a restarted broker needs, as plain data: the run's description, each vertex's
counters, and how to rebuild a :class:`Scheduler` from them (no files, no sqlite here;
:mod:`backend_stub.store` keeps the rows).

The broker's state is kept as streams, not queues: every message emitted on a stream that
has consumers is numbered (``vertex.k``, 0, 1, ...); each input knows how many of its
stream's messages it has consumed; each logged tick records where its part of each input
starts (``Inflight.starts``). A restart rebuilds every queue and every logged tick's exact
composition from the retained messages, so replays after a broker crash are composed
exactly as before, as after a worker crash. A message is released once every consumer has
consumed it and no retained tick refers to it (:func:`low_water`).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from backend_stub.builtins import Source
from backend_stub.model import Inflight, Value, implied_starts
from backend_stub.vertices import ComponentVertex, SinkVertex, SourceVertex, VertexState, WorkerVertex
from pipelogic.pipeline import Pipeline
from pipelogic.types import InputsPullRequest, codec_for, encode

__all__ = ["Regenerated", "apply_record", "describe", "diff", "low_water", "rebuild", "vertex_record"]

# Vertex parameters that change pacing, durability or parallelism but not what flows: a
# resumed run may change them.
_FREE_PARAMS = frozenset({"snapshot", "rate", "replicas"})


def _plain(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str, sort_keys=True))


def describe(p: Pipeline) -> dict[str, Any]:
    """What makes a run of ``p`` what it is: vertices (kind, parameters, config, types) and
    connections. A store made for another description is not resumed."""
    vertices = {}
    connections = []
    for name in p.order:
        v = p.vertices[name]
        vertices[name] = _plain(
            {
                "kind": v.kind,
                "params": {k: x for k, x in v.params.items() if k not in _FREE_PARAMS and k != "config"},
                "config": v.config,
                "inputs": [str(t) for t in v.input_types],
                "outputs": [str(t) for t in v.output_types],
            }
        )
        connections += [f"{port} -> {name}.{j}" for j, port in enumerate(v.inputs) if port is not None]
    return {"name": p.name, "settings": _plain(p.settings), "vertices": vertices, "connections": sorted(connections)}


def diff(old: dict[str, Any], new: dict[str, Any], limit: int = 8) -> list[str]:
    """What changed from ``old`` to ``new``, one line per difference."""
    out: list[str] = []
    if old.get("name") != new.get("name"):
        out.append(f"name: {old.get('name')!r} -> {new.get('name')!r}")
    if old.get("settings") != new.get("settings"):
        out.append(f"settings: {old.get('settings')} -> {new.get('settings')}")
    ov, nv = old.get("vertices", {}), new.get("vertices", {})
    out += [f"vertex {n} was removed" for n in ov if n not in nv]
    out += [f"vertex {n} was added" for n in nv if n not in ov]
    for n in ov:
        if n in nv and ov[n] != nv[n]:
            for key in ("kind", "params", "config", "inputs", "outputs"):
                a, b = ov[n].get(key), nv[n].get(key)
                if a != b:
                    if isinstance(a, dict) and isinstance(b, dict):
                        for k in sorted(set(a) | set(b)):
                            if a.get(k) != b.get(k):
                                out.append(f"vertex {n}: {key}.{k}: {a.get(k)!r} -> {b.get(k)!r}")
                    else:
                        out.append(f"vertex {n}: {key}: {a!r} -> {b!r}")
    oc, nc = set(old.get("connections", [])), set(new.get("connections", []))
    out += [f"connection {c} was removed" for c in sorted(oc - nc)]
    out += [f"connection {c} was added" for c in sorted(nc - oc)]
    return out[:limit] + ([f"... and {len(out) - limit} more"] if len(out) > limit else [])


_NO_WORKER = {
    "next_tick": 0,
    "applied": 0,
    "checkpoints": [],
    "goodbye": False,
    "features": [],
    "pull_request": None,
    "errors": 0,
    "restarts": 0,
    "connects": 0,
    "duplicates": 0,
    "replayed": 0,
    "dropped_at_end": 0,
    "dead_lettered": 0,
    "config_version": 0,
}
"""A built-in vertex's worker counters: every record has every key, so it reads back
whatever wrote it."""


def vertex_record(vs: VertexState, dead_letter_offset: int | None) -> dict[str, Any]:
    """The counters of one vertex that a restarted broker needs (msgpack-able)."""
    rec: dict[str, Any] = {
        "finished": vs.finished,
        "out_counts": list(vs.out_counts),
        "consumed": [b.consumed for b in vs.inputs],
        "max_len": [b.max_len for b in vs.inputs],
        "ticks": vs.ticks,
    }
    if not isinstance(vs, ComponentVertex):
        rec.update(_NO_WORKER)
    else:
        rec.update(
            next_tick=vs.next_tick,
            applied=vs.applied,
            checkpoints=list(vs.checkpoints),
            goodbye=vs.goodbye,
            features=list(vs.features),
            pull_request=vs.pull_request.to_wire() if vs.pull_request is not None else None,
            errors=vs.errors,
            restarts=vs.restarts,
            connects=vs.connects,
            duplicates=vs.duplicates,
            replayed=vs.replayed,
            dropped_at_end=vs.dropped_at_end,
            dead_lettered=vs.dead_lettered,
            config_version=vs.config_version,
        )
    comp = vs.v.component
    if comp is not None and rec["config_version"]:
        rec["config"] = {k: encode(x, comp.config_schema[k].type)[0] for k, x in vs.v.config.items()}
    if isinstance(vs, SourceVertex):
        rec["source"] = [vs.source.produced, vs.source.exhausted]
    if isinstance(vs, SinkVertex):
        rec["sink"] = [vs.sink.offset, vs.sink.count]
    if dead_letter_offset is not None:
        rec["dead_letter"] = dead_letter_offset
    return rec


def apply_record(vs: VertexState, rec: dict[str, Any]) -> None:
    """Set a freshly built vertex's counters from its record (queues and log come later,
    from :func:`rebuild`). Every incarnation of a worker is gone: they reconnect."""
    vs.finished = rec["finished"]
    vs.out_counts = list(rec["out_counts"])
    vs.ticks = rec["ticks"]
    for buf, consumed, max_len in zip(vs.inputs, rec["consumed"], rec["max_len"]):
        buf.consumed = consumed
        buf.max_len = max_len
    if isinstance(vs, SourceVertex) and "source" in rec:
        produced, exhausted = rec["source"]
        vs.source.skip(produced)
        vs.source.exhausted = vs.source.exhausted or exhausted
    if isinstance(vs, SinkVertex) and "sink" in rec:
        vs.sink.resume(*rec["sink"])
    if not isinstance(vs, ComponentVertex):
        return
    vs.next_tick = rec["next_tick"]
    vs.applied = vs.sent = rec["applied"]
    if isinstance(vs, WorkerVertex):
        vs.expect = vs.applied
        vs.inflight_bytes = 0
    vs.checkpoints = deque(rec["checkpoints"], maxlen=2)
    vs.goodbye = rec["goodbye"]
    vs.features = list(rec["features"])
    vs.pull_request = InputsPullRequest.from_wire(rec["pull_request"]) if rec["pull_request"] is not None else None
    vs.errors = rec["errors"]
    vs.restarts = rec["restarts"]
    vs.connects = rec["connects"]
    vs.duplicates = rec["duplicates"]
    vs.replayed = rec["replayed"]
    vs.dropped_at_end = rec["dropped_at_end"]
    vs.config_version = rec["config_version"]
    vs.dead_lettered = rec.get("dead_lettered", 0)
    comp = vs.v.component
    if comp is not None and "config" in rec:
        vs.v.config.update(
            {k: codec_for(comp.config_schema[k].type).dec(data, []) for k, data in rec["config"].items()}
        )


class Regenerated(Mapping[int, Value]):
    """A built-in source's messages, made again by a fresh source on demand (the store does
    not keep them: the source is deterministic). Asked for mostly in order, as a rebuild
    does; going back starts the source over."""

    def __init__(self, make: Callable[[], Source]) -> None:
        self._make = make
        self._source: Source | None = None
        self._next = 0  # the number of the next message the source makes
        self._made: dict[int, Value] = {}

    def __getitem__(self, seq: int) -> Value:
        made = self._made.get(seq)
        if made is not None:
            return made
        if self._source is None or seq < self._next:
            self._source = self._make()
            self._source.skip(seq)
            self._next = seq
        while self._next <= seq:
            values = self._source.take(min(1024, seq - self._next + 1))
            if not values:
                raise KeyError(seq)  # past the source's end: the store does not match this pipeline
            for v in values:
                self._made[self._next] = v
                self._next += 1
        return self._made[seq]

    def __iter__(self) -> Iterator[int]:
        return iter(self._made)

    def __len__(self) -> int:
        return len(self._made)


def rebuild(
    vertices: dict[str, VertexState],
    values: Mapping[str, Mapping[int, Value]],
    ticks: dict[str, list[tuple[int, list[list[int]], Any]]],
) -> None:
    """Refill every input queue and every vertex's log of retained ticks from the retained
    messages, after :func:`apply_record`. ``ticks``: per vertex, the rows of the ticks
    that do not follow from the tick before (the first retained one always has one); the
    others are re-formed (:func:`~backend_stub.model.implied_starts`). Raises KeyError if a
    needed message is missing (the store is inconsistent: never expected)."""
    for vs in vertices.values():
        for k, consumers in enumerate(vs.consumers):
            stream = values.get(f"{vs.name}.{k}", {})
            for cname, j in consumers:
                c = vertices[cname]
                buf = c.inputs[j]
                buf.received = vs.out_counts[k]
                buf.closed = vs.finished
                buf.queue = deque(stream[q] for q in range(buf.consumed, buf.received))
                buf.recount()
    for name, rows in ticks.items():
        vs = vertices[name]
        assert isinstance(vs, ComponentVertex), f"ticks stored for {name}, which forms none"
        log: deque[Inflight] = deque()
        stored = {tick: (starts, extra) for tick, starts, extra in rows}
        entry: list[tuple[int, int, int]] = []
        for tick in range(rows[0][0] if rows else vs.next_tick, vs.next_tick):
            row = stored.get(tick)
            if row is not None:
                entry, extra = [(int(a), int(b), int(c)) for a, b, c in row[0]], row[1]
            else:
                entry, extra = implied_starts(entry), None
            composition = []
            for j, (first, skip, count) in enumerate(entry):
                port = vs.v.inputs[j]
                assert port is not None
                stream = values.get(f"{port.vertex}.{port.index}", {})
                composition.append([stream[q] for q in range(first + skip, first + skip + count)])
            log.append(Inflight(tick, composition, extra, entry))
        vs.log = log


def low_water(vertices: dict[str, VertexState]) -> dict[str, int]:
    """Per stream with consumers: the first message still needed (queued at a consumer, or
    part of a tick a consumer retains). Messages below it can be released."""
    lows: dict[str, int] = {}
    for vs in vertices.values():
        for k, consumers in enumerate(vs.consumers):
            if not consumers:
                continue
            low = vs.out_counts[k]
            for cname, j in consumers:
                c = vertices[cname]
                pos = c.inputs[j].consumed
                if isinstance(c, ComponentVertex) and c.log and c.log[0].starts:
                    pos = min(pos, c.log[0].starts[j][0])
                low = min(low, pos)
            lows[f"{vs.name}.{k}"] = low
    return lows
