"""What the web view shows, as JSON-ready dictionaries: the graph (once), the live figures
(from successive status replies), a vertex's details, a tap's values with their pictures.

Plain code: :func:`graph_of` and :func:`vertex_detail` read the scheduler's state and run
on the broker's loop thread (through the bridge); :class:`Rates`, :func:`tap_values` and
:func:`log_tail` run on the view's threads and touch no broker state.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backend_stub.vertices import ComponentVertex, VertexState
from pipelogic import protocol as P
from pipelogic.jsonform import to_display
from pipelogic.pictures import Picture, boxes, encode_jpeg, encode_png, have_jpeg, pictures
from pipelogic.pipeline import Pipeline
from pipelogic.types import create_type, decode_frame

__all__ = ["Rates", "edge_id", "graph_of", "log_tail", "tap_values", "vertex_detail"]

_PICTURE_TYPES = ("Image", "DepthImage", "VideoFrame")
SHOWN_BYTES = 48  # a Bytes value longer than this shows as its size, not its contents


def edge_id(src: str, output: int, dst: str, inp: int) -> str:
    return f"{src}.{output}->{dst}.{inp}"


def graph_of(pipeline: Pipeline, states: Mapping[str, VertexState]) -> dict[str, Any]:
    """The pipeline's vertices and edges, with what does not change while it runs."""
    vertices: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for name in pipeline.order:
        v, vs = pipeline.vertices[name], states[name]
        spec = v.component
        vertices.append(
            {
                "name": name,
                "kind": v.kind if v.kind == "component" else f"{v.kind}:{v.builtin}",
                "component": spec.name if spec is not None else None,
                "replicas": v.replicas,
                "inputs": [{"index": j, "type": str(t)} for j, t in enumerate(v.input_types)],
                "outputs": [{"index": k, "type": str(t)} for k, t in enumerate(v.output_types)],
                "configurable": bool(spec is not None and any(p.mutable for p in spec.config_schema.values())),
            }
        )
        for k, consumers in enumerate(vs.consumers):
            t = str(v.output_types[k]) if k < len(v.output_types) else ""
            for dst, j in consumers:
                edges.append(
                    {
                        "id": edge_id(name, k, dst, j),
                        "from": name,
                        "output": k,
                        "to": dst,
                        "input": j,
                        "stream": f"{name}.{k}",
                        "type": t,
                        "capacity": states[dst].settings.buffer_capacity,
                        "pictures": any(p in t for p in _PICTURE_TYPES),
                        "boxes": "BoundingBox" in t,
                    }
                )
    # A stream of boxes is drawn over the pictures its producer was given: name that stream.
    by_to: dict[str, list[dict[str, Any]]] = {}
    for e in edges:
        by_to.setdefault(e["to"], []).append(e)
    for e in edges:
        if e["boxes"]:
            seen = [f["stream"] for f in by_to.get(e["from"], []) if f["pictures"]]
            e["over"] = seen[0] if seen else None
    return {"pipeline": pipeline.name, "vertices": vertices, "edges": edges}


def vertex_detail(pipeline: Pipeline, vs: VertexState) -> dict[str, Any]:
    """A vertex's config (typed by config_schema, which keys are mutable), its file slots and
    what each is bound to."""
    v = vs.v
    spec = v.component
    out: dict[str, Any] = {"name": vs.name, "kind": v.kind, "config": [], "files": [], "config_version": 0}
    if spec is None:
        out["params"] = {k: _plain(x) for k, x in v.params.items()}
        return out
    if isinstance(vs, ComponentVertex):
        out["config_version"] = vs.config_version
    slots = {s.config_key: s for s in spec.file_slots.values()}
    for key, param in spec.config_schema.items():
        slot = slots.get(key)
        out["config"].append(
            {
                "key": key,
                "type": param.type_text,
                "value": _plain(v.config.get(key, param.default if param.has_default else None)),
                "default": _plain(param.default) if param.has_default else None,
                "description": param.description,
                "mutable": param.mutable,
                "file_slot": slot.name if slot is not None else None,
            }
        )
    for slot in spec.file_slots.values():
        out["files"].append(
            {
                "slot": slot.name,
                "types": slot.type_text,
                "config_key": slot.config_key,
                "bound_to": _plain(v.config.get(slot.config_key)),
                "generated": slot.generated,
                "optional": slot.optional,
                "mutable": slot.mutable,
            }
        )
    return out


def _plain(value: Any) -> Any:
    """A config value as JSON has it (long bytes shown by size)."""
    return to_display(value, SHOWN_BYTES)


class Rates:
    """Live figures from successive status replies: messages/s and bytes/s per edge over
    the last second or more, queue depth per edge, each vertex's state and counters."""

    WINDOW_S = 1.0

    def __init__(self, graph: dict[str, Any]) -> None:
        self.edges = graph["edges"]
        self._then: tuple[float, dict[str, int], dict[str, int]] | None = None  # time, counts, bytes
        self._rates: dict[str, tuple[float, float]] = {}
        # Per vertex and histogram (a worker's tick time, a sink's latency): its count and
        # sum at the window's start, and the mean over the last window that had any.
        self._hist_then: dict[tuple[str, str], tuple[int, float]] = {}
        self._means: dict[tuple[str, str], float] = {}

    def _mean(self, v: P.VertexStatus, key: str, roll: bool) -> float | None:
        """The mean of histogram ``key`` of ``v`` over the last window (seconds)."""
        h = v.get(key)
        if not isinstance(h, dict) or not h.get("counts"):
            return None
        at = (v["name"], key)
        count, total = h["counts"][-1], float(h["sum"])
        if roll:
            c0, s0 = self._hist_then.get(at, (0, 0.0))
            if count > c0:
                self._means[at] = (total - s0) / (count - c0)
            self._hist_then[at] = (count, total)
        return self._means.get(at)

    def update(self, st: P.StatusReply, now: float) -> dict[str, Any]:
        by_name = {v["name"]: v for v in st.vertices}
        counts = {s["from"]: s["count"] for s in st.streams}
        nbytes: dict[str, int] = {}
        for e in self.edges:
            dst = by_name.get(e["to"])
            ib = dst.get("input_bytes", []) if dst is not None else []
            nbytes[e["id"]] = ib[e["input"]] if e["input"] < len(ib) else 0
        roll = self._then is None or now - self._then[0] >= self.WINDOW_S
        if self._then is None:
            self._then = (now, counts, nbytes)
        elif roll:
            t0, c0, b0 = self._then
            dt = now - t0
            self._rates = {
                e["id"]: (
                    max(0, counts.get(e["stream"], 0) - c0.get(e["stream"], 0)) / dt,
                    max(0, nbytes[e["id"]] - b0.get(e["id"], 0)) / dt,
                )
                for e in self.edges
            }
            self._then = (now, counts, nbytes)
        edges = {}
        for e in self.edges:
            dst = by_name.get(e["to"])
            queues = dst["queues"] if dst is not None else []
            rate, brate = self._rates.get(e["id"], (0.0, 0.0))
            edges[e["id"]] = {
                "rate": round(rate, 2),
                "bytes_rate": round(brate),
                "queue": queues[e["input"]] if e["input"] < len(queues) else 0,
                "capacity": e["capacity"],
                "count": counts.get(e["stream"], 0),
            }
        vertices = {}
        for v in st.vertices:
            lost = P.losses(v)
            vertices[v["name"]] = {
                "state": "stuck" if v.get("stuck_s") else v["state"],
                "rate": v.get("rate"),
                "stuck_s": v.get("stuck_s", 0),
                "ticks": v["ticks"],
                "inflight": v["inflight"],
                "restarts": v["restarts"],
                "errors": v["errors"],
                "lost": lost,
                "blocked": v.get("blocked"),
                "dead_lettered": v.get("dead_lettered", 0),
                "pid": v.get("pid"),
                "config_version": v.get("config_version", 0),
                "tick_s": self._mean(v, "tick_seconds", roll),  # a worker's time per tick, lately
                "latency_s": self._mean(v, "latency_seconds", roll),  # a sink's source-to-write, lately
                "instances": [
                    {"instance": i["instance"], "pid": i["pid"], "state": i["state"], "ticks": i["ticks"]}
                    for i in v.get("instances", [])
                ],
            }
        broker: dict[str, Any] = dict(st.broker or {})
        return {
            "t": now,
            "pipeline": st.pipeline,
            "state": st.state,
            "error": st.error,
            "vertices": vertices,
            "edges": edges,
            "refused": sum(broker.get("refused", {}).values()),
            "store_error": broker.get("store_error"),
        }


def _picture_json(pic: Picture, jpeg: bool) -> dict[str, Any]:
    data, mime = (encode_jpeg(pic), "image/jpeg") if jpeg else (encode_png(pic), "image/png")
    return {
        "path": pic.path,
        "kind": pic.kind,
        "width": pic.width,
        "height": pic.height,
        "source_width": pic.source_width,
        "source_height": pic.source_height,
        "src": f"data:{mime};base64," + base64.b64encode(data).decode("ascii"),
    }


def _split(reply: P.TapReply, payload: list[Any]) -> list[tuple[Any, list[Any]]]:
    """A tap reply's values, undecoded: each its frame and its buffer frames."""
    out, pos = [], 0
    for n in reply.layout:
        if type(n) is not int or n < 0 or pos + 1 + n > len(payload):
            raise ValueError(f"tap: malformed reply layout {reply.layout!r:.100}")
        out.append((payload[pos], payload[pos + 1 : pos + 1 + n]))
        pos += 1 + n
    return out


def tap_values(
    reply: P.TapReply,
    payload: list[Any],
    max_side: int,
    jpeg: bool | None = None,
    over: tuple[P.TapReply, list[Any]] | None = None,
) -> dict[str, Any]:
    """A tap poll's values for the page, each as JSON with its boxes; the pictures of the
    newest value that has any, encoded (scaled so no side exceeds ``max_side``); older
    ones are not encoded (a viewer shows the newest).

    ``over``: a poll of the stream of pictures the boxes are drawn over (the one their
    producer was given). Its picture is the one of the same message number as the newest
    value with boxes (message n of a one-input vertex's output answers message n of its
    input), else its newest; ``over.matched`` says which."""
    jpeg = have_jpeg() if jpeg is None else jpeg
    t = create_type(reply.type)
    decoded = [decode_frame(frame, t, bufs) for frame, bufs in _split(reply, payload)]
    values: list[dict[str, Any]] = [
        {
            "index": reply.first + i,
            "value": to_display(x, SHOWN_BYTES),
            "boxes": [b.__dict__ for b in boxes(x)],
            "pictures": [],
        }
        for i, x in enumerate(decoded)
    ]
    for x, out in zip(reversed(decoded), reversed(values)):
        pics = pictures(x, max_side)
        if pics:
            out["pictures"] = [_picture_json(p, jpeg) for p in pics]
            break
    result: dict[str, Any] = {"type": reply.type, "next": reply.next, "dropped": reply.dropped, "values": values}
    if over is not None:
        result["over"] = _over(over, [v for v in values if v["boxes"]], max_side, jpeg)
    return result


def _over(
    over: tuple[P.TapReply, list[Any]], with_boxes: list[dict[str, Any]], max_side: int, jpeg: bool
) -> dict[str, Any]:
    """The picture to draw the newest boxes over: the one of their message number, else the
    newest. Values are decoded only as far as needed (the match first, then newest first)."""
    o_reply, o_payload = over
    t = create_type(o_reply.type)
    frames = _split(o_reply, o_payload)
    target = with_boxes[-1] if with_boxes else None
    order = list(range(len(frames) - 1, -1, -1))
    at = target["index"] - o_reply.first if target is not None else -1
    if 0 <= at < len(frames):
        order.insert(0, at)
    chosen: tuple[int, list[Picture]] | None = None
    for i in order:
        pics = pictures(decode_frame(frames[i][0], t, frames[i][1]), max_side)
        if pics:
            chosen = (o_reply.first + i, pics)
            break
    return {
        "next": o_reply.next,
        "index": chosen[0] if chosen else None,
        "pictures": [_picture_json(p, jpeg) for p in chosen[1]] if chosen else [],
        "boxes": target["boxes"] if target else [],
        "matched": bool(chosen and target and chosen[0] == target["index"]),
    }


def log_tail(log_dir: Path | None, vertex: str, lines: int = 200) -> list[str]:
    """The last ``lines`` lines the vertex's worker(s) wrote (``pipelogic up`` keeps them in
    the run's ``logs`` folder: ``VERTEX.log``, a replica's ``VERTEX#i.log``)."""
    if log_dir is None or not log_dir.is_dir():
        return []
    out: list[str] = []
    for f in sorted(log_dir.glob(f"{vertex}.log")) + sorted(log_dir.glob(f"{vertex}#*.log")):
        try:
            with open(f, "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(0, size - 64 * 1024))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            continue
        tail = text.splitlines()[-lines:]
        prefix = f"{f.stem} | " if "#" in f.stem else ""
        out.extend(prefix + line for line in tail)
    return out[-lines:]
