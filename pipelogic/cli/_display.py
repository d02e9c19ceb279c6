"""Text rendering of broker status for `pipelogic status` and `pipelogic up`."""

from __future__ import annotations

from typing import Any

from pipelogic import protocol as P

__all__ = ["loss_notes", "progress_line", "status_table"]


def _state(v: P.VertexStatus) -> str:
    stuck = v.get("stuck_s") or 0
    if stuck:
        return f"STUCK {stuck:.0f}s"
    if v.get("blocked"):
        return "BLOCKED"
    if "instances" in v and v["state"] not in ("finished", "failed"):  # replicated: how many serve it
        running = sum(1 for i in v["instances"] if i["state"] == "running")
        return f"{v['state']} {running}/{v.get('replicas', len(v['instances']))}"
    return str(v["state"])


def status_table(st: P.StatusReply, rates: dict[str, float] | None = None, with_error: bool = True) -> str:
    """The vertex table, then one line per loss and per stuck vertex, then the error.
    ``rates`` (from `up`'s own sampling) stand in for a broker that sends none."""
    head = ["vertex", "kind", "state", "ticks", "rate/s", "queues", "max", "restarts", "errors", "lost"]
    rows = [head]
    for v in st.vertices:
        rate = v.get("rate")
        if rate is None:
            rate = (rates or {}).get(v["name"])
        rows.append(
            [
                v["name"],
                v["kind"],
                _state(v),
                str(v["ticks"]),
                f"{rate:.0f}" if rate is not None else "-",
                ",".join(map(str, v["queues"])) or "-",
                ",".join(map(str, v["max_queues"])) or "-",
                str(v["restarts"]),
                str(v["errors"]),
                str(sum((v.get("lost") or {}).values())),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"pipeline {st.pipeline}: {st.state}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for v in st.vertices:
        for i in v.get("instances") or []:
            lines.append(
                f"  {v['name']} instance {i['instance']}: {i['state']}, pid {i['pid']} on {i['host']}, "
                f"{i['ticks']} ticks, {i['inflight']} in flight"
            )
    lines += [f"lost: {note}" for note in loss_notes(st.vertices)]
    for v in st.vertices:
        if v.get("stuck_s"):
            lines.append(
                f"stuck: {v['name']} has input waiting but completed no tick for {v['stuck_s']:.0f} s "
                f"({_pids(v)}; is its function blocked?)"
            )
    for v in st.vertices:
        if v.get("blocked"):
            lines.append(f"blocked: {v['name']} {v['blocked']}; the pipeline waits and retries (nothing is lost)")
    store_error = st.broker["store_error"] if st.broker else None
    if store_error:
        lines.append(f"blocked: the broker cannot write its recovery store ({store_error}); the pipeline waits")
    refused = st.broker["refused"] if st.broker else {}
    if refused:
        who = ", ".join(f"{peer}: {n}" for peer, n in sorted(refused.items()))
        lines.append(
            f"refused: {sum(refused.values())} malformed or impossible message(s) ({who}); the broker's log says why"
        )
    if st.error and with_error:
        lines.append(f"error: {st.error}")
    return "\n".join(lines)


def loss_notes(vertices: list[P.VertexStatus]) -> list[str]:
    """One line per vertex and kind of loss."""
    out = []
    for v in vertices:
        for kind, n in (v.get("lost") or {}).items():
            if n:
                out.append(f"{v['name']}: {n} {P.LOSS_KINDS.get(kind, kind)}")
    return out


def progress_line(st: P.StatusReply, rates: dict[str, float]) -> str:
    parts: list[Any] = []
    for s in st.streams:
        name = s["from"].rsplit(".", 1)
        label = s["from"] if name[1] != "0" else name[0]
        r = rates.get(s["from"])
        parts.append(f"{label} {s['count']}" + (f" ({r:.0f}/s)" if r else ""))
    lost = sum(sum((v.get("lost") or {}).values()) for v in st.vertices)
    stuck = [v["name"] for v in st.vertices if v.get("stuck_s")]
    blocked = [v["name"] for v in st.vertices if v.get("blocked")]
    tail = (
        (f"  lost {lost}" if lost else "")
        + (f"  STUCK {','.join(stuck)}" if stuck else "")
        + (f"  BLOCKED {','.join(blocked)}" if blocked else "")
    )
    return f"[{st.state}] " + "  ".join(parts) + tail


def _pids(v: P.VertexStatus) -> str:
    """The process(es) a stuck vertex waits on: a replicated one's instances holding ticks."""
    pids = v.get("stuck_pids")
    if pids is None:
        return f"pid {v.get('pid')}"
    if not pids:
        return "no instance holds a tick"
    return ("pid " if len(pids) == 1 else "pids ") + ", ".join(str(p) for p in pids)
