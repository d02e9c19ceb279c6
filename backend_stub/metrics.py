"""Prometheus metrics of a running broker, served on an opt-in address (``--metrics``).

The broker loop publishes a status snapshot at most twice a second (and once at the end);
a scrape, on prometheus_client's own HTTP thread, turns the latest snapshot into metric
families. The loop is never blocked by a scrape and the snapshot is replaced whole, so a
scrape sees one consistent moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server

from pipelogic import protocol as P

__all__ = ["MetricsServer", "parse_address"]

PUBLISH_S = 0.5


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"--metrics: expected HOST:PORT, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"--metrics: port out of range in {text!r}")
    return (host.strip("[]") or "127.0.0.1"), number


class _Collector:
    def __init__(self) -> None:
        self.status: P.StatusReply | None = None
        self.at = 0.0  # when the snapshot was taken (monotonic)

    def describe(self) -> list[Metric]:
        return []  # families are built per scrape

    def collect(self) -> Iterator[Metric]:
        st = self.status
        if st is None:
            return
        yield from _families(st, time.monotonic())


def _families(st: P.StatusReply, now: float) -> Iterator[Metric]:
    v_labels = ["pipeline", "vertex", "kind"]

    def vfam(cls: Any, name: str, doc: str, key: Callable[[P.VertexStatus], float | None]) -> Metric:
        fam: GaugeMetricFamily | CounterMetricFamily = cls(name, doc, labels=v_labels)
        for v in st.vertices:
            value = key(v)
            if value is not None:
                fam.add_metric([st.pipeline, v["name"], v["kind"]], float(value))
        return fam

    state = GaugeMetricFamily(
        "pipelogic_pipeline_state", "1 for the pipeline's current state", labels=["pipeline", "state"]
    )
    for s in ("running", "done", "failed"):
        state.add_metric([st.pipeline, s], 1.0 if st.state == s else 0.0)
    yield state
    yield vfam(
        CounterMetricFamily,
        "pipelogic_vertex_ticks",
        "Ticks completed (messages, for built-in sources and sinks)",
        lambda v: v["ticks"],
    )
    yield vfam(
        GaugeMetricFamily, "pipelogic_vertex_rate", "Ticks per second over the last 5 s", lambda v: v.get("rate")
    )
    yield vfam(
        GaugeMetricFamily, "pipelogic_vertex_inflight", "Ticks sent and not yet answered", lambda v: v["inflight"]
    )
    yield vfam(
        CounterMetricFamily, "pipelogic_vertex_restarts", "New incarnations of the worker", lambda v: v["restarts"]
    )
    yield vfam(CounterMetricFamily, "pipelogic_vertex_errors", "Failed ticks (fatal or skipped)", lambda v: v["errors"])
    yield vfam(
        CounterMetricFamily,
        "pipelogic_vertex_replayed",
        "Ticks sent again to a restarted worker",
        lambda v: v["replayed"],
    )
    yield vfam(
        CounterMetricFamily,
        "pipelogic_vertex_duplicates",
        "Results received twice and dropped",
        lambda v: v["duplicates"],
    )
    yield vfam(
        GaugeMetricFamily,
        "pipelogic_vertex_stuck_seconds",
        "Seconds with work waiting and no tick completed, past the liveness bound (0: not stuck)",
        lambda v: v.get("stuck_s"),
    )
    yield vfam(
        GaugeMetricFamily,
        "pipelogic_vertex_up",
        "1 if a worker serves the vertex (or it is built in)",
        lambda v: 1.0 if v["state"] in ("running", "connected") else 0.0,
    )
    yield vfam(
        GaugeMetricFamily,
        "pipelogic_vertex_instances",
        "Worker instances serving the vertex and ready (a replicated vertex: up to and beyond its replicas)",
        lambda v: (
            float(sum(i["state"] == "running" for i in v["instances"]))
            if "instances" in v
            else (1.0 if v["kind"] == "component" and v["state"] == "running" else 0.0)
        ),
    )
    yield vfam(
        GaugeMetricFamily,
        "pipelogic_vertex_snapshot_age_seconds",
        "Seconds since the vertex's last state checkpoint (stateful vertices that have one)",
        lambda v: v.get("snapshot_age_s"),
    )
    lost = CounterMetricFamily(
        "pipelogic_vertex_lost",
        "Messages lost by reason (virtual_dropped, dropped_at_end, dead_lettered)",
        labels=[*v_labels, "reason"],
    )
    for v in st.vertices:
        for reason in P.LOSS_KINDS:
            lost.add_metric([st.pipeline, v["name"], v["kind"], reason], float((v.get("lost") or {}).get(reason, 0)))
    yield lost
    depth = GaugeMetricFamily("pipelogic_input_queue_depth", "Messages queued at an input", labels=[*v_labels, "input"])
    for v in st.vertices:
        for j, n in enumerate(v["queues"]):
            depth.add_metric([st.pipeline, v["name"], v["kind"], str(j)], float(n))
    yield depth
    msgs = CounterMetricFamily(
        "pipelogic_stream_messages", "Messages produced on an output stream", labels=["pipeline", "stream"]
    )
    for stream in st.streams:
        msgs.add_metric([st.pipeline, stream["from"]], float(stream["count"]))
    yield msgs
    broker = st.broker
    yield CounterMetricFamily(
        "pipelogic_broker_commits",
        "Commits of the broker's recovery store",
        value=float(broker["commits"] if broker else 0),
    )
    refused = CounterMetricFamily(
        "pipelogic_refused_messages",
        "Malformed or impossible messages refused, by peer (a vertex, unknown, control)",
        labels=["pipeline", "peer"],
    )
    for peer, n in sorted((broker["refused"] if broker else {}).items()):
        refused.add_metric([st.pipeline, str(peer)], float(n))
    yield refused


class MetricsServer:
    """The HTTP endpoint and the snapshot it serves."""

    def __init__(self, address: str) -> None:
        host, port = parse_address(address)
        self.collector = _Collector()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        self.server, self.thread = start_http_server(port, host, registry=registry)
        self.url = f"http://{host}:{self.server.server_port}/metrics"
        self._next = 0.0

    def publish(self, status: Any, now: float, force: bool = False) -> None:
        """Take a snapshot (``status`` is a callable) if the last is older than PUBLISH_S."""
        if force or now >= self._next:
            self._next = now + PUBLISH_S
            self.collector.status = status()
            self.collector.at = now

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
