"""Text rendering of broker status for `pipelogic status` and `pipelogic up`."""

from __future__ import annotations

from typing import Any

from pipelogic import protocol as P


def status_table(st: P.StatusReply, rates: dict[str, float] | None = None) -> str:
    head = ["vertex", "kind", "state", "ticks", "rate/s", "queues", "max", "restarts", "errors", "v.dropped"]
    rows = [head]
    for v in st.vertices:
        rate = (rates or {}).get(v["name"])
        rows.append([
            v["name"], v["kind"], v["state"], str(v["ticks"]),
            f"{rate:.0f}" if rate is not None else "-",
            ",".join(map(str, v["queues"])) or "-",
            ",".join(map(str, v["max_queues"])) or "-",
            str(v["restarts"]), str(v["errors"]), str(v["virtual_dropped"]),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"pipeline {st.pipeline}: {st.state}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if st.error:
        lines.append(f"error: {st.error}")
    return "\n".join(lines)


def progress_line(st: P.StatusReply, rates: dict[str, float]) -> str:
    parts: list[Any] = []
    for s in st.streams:
        name = s["from"].rsplit(".", 1)
        label = s["from"] if name[1] != "0" else name[0]
        r = rates.get(s["from"])
        parts.append(f"{label} {s['count']}" + (f" ({r:.0f}/s)" if r else ""))
    return f"[{st.state}] " + "  ".join(parts)
