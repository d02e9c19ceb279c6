"""Prometheus metrics of a running broker, served on an opt-in address (``--metrics``).

The broker loop publishes a status snapshot at most twice a second (and once at the end);
a scrape, on prometheus_client's own HTTP thread, turns the latest snapshot into metric
families. The loop is never blocked by a scrape and the snapshot is replaced whole, so a
scrape sees one consistent moment.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import make_wsgi_app

from pipelogic import protocol as P

__all__ = ["MetricsServer", "parse_address"]

PUBLISH_S = 0.5


def parse_address(text: str, flag: str = "--metrics") -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1); port 0 picks a free one.
    ``flag``: the option the text came from, for the error."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{flag}: expected HOST:PORT, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{flag}: port out of range in {text!r}")
    return (host.strip("[]") or "127.0.0.1"), number


class _Collector:
    def __init__(self) -> None:
        self.status: P.StatusReply | None = None
        self.at = 0.0  # when the snapshot was taken (monotonic)
        self.final_scraped = threading.Event()  # a scrape of the run's end was sent whole

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
    held = GaugeMetricFamily(
        "pipelogic_input_queue_bytes", "Payload bytes queued at an input", labels=[*v_labels, "input"]
    )
    taken = CounterMetricFamily(
        "pipelogic_input_bytes", "Payload bytes that arrived at an input", labels=[*v_labels, "input"]
    )
    for v in st.vertices:
        for j, n in enumerate(v["queues"]):
            labels = [st.pipeline, v["name"], v["kind"], str(j)]
            depth.add_metric(labels, float(n))
            if "queue_bytes" in v:
                held.add_metric(labels, float(v["queue_bytes"][j]))
                taken.add_metric(labels, float(v["input_bytes"][j]))
    yield depth
    yield held
    yield taken
    ticks = HistogramMetricFamily(
        "pipelogic_vertex_tick_seconds",
        "How long a worker's ticks take, timed by the broker while the worker has work",
        labels=v_labels,
    )
    latency = HistogramMetricFamily(
        "pipelogic_sink_latency_seconds",
        "Seconds from a source making a message to a sink writing it (one message per source every 0.1 s)",
        labels=v_labels,
    )
    for v in st.vertices:
        if "tick_seconds" in v:
            ticks.add_metric([st.pipeline, v["name"], v["kind"]], *_buckets(v["tick_seconds"]))
        if "latency_seconds" in v:
            latency.add_metric([st.pipeline, v["name"], v["kind"]], *_buckets(v["latency_seconds"]))
    yield ticks
    yield latency
    yield from _instances(st)
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
    shm = broker["shm"] if broker else None
    for key, doc in (
        ("adopted", "Shared-memory slots the broker took in place of a payload frame"),
        ("unlinked", "Shared-memory slot files removed once nobody held them"),
    ):
        yield CounterMetricFamily(f"pipelogic_shm_{key}", doc, value=float((shm or {}).get(key, 0)))
    yield GaugeMetricFamily(
        "pipelogic_shm_held", "Shared-memory slots the broker holds now", value=float((shm or {}).get("held", 0))
    )


def _buckets(h: P.Histogram) -> tuple[list[tuple[str, float]], float]:
    buckets = [(str(le), float(c)) for le, c in zip(h["le"], h["counts"])]
    buckets.append(("+Inf", float(h["counts"][-1])))
    return buckets, float(h["sum"])


def _instances(st: P.StatusReply) -> Iterator[Metric]:
    """A replicated vertex's series per instance (its ``VERTEX#i`` id)."""
    labels = ["pipeline", "vertex", "instance"]
    ticks = CounterMetricFamily("pipelogic_instance_ticks", "Ticks an instance completed", labels=labels)
    inflight = GaugeMetricFamily(
        "pipelogic_instance_inflight", "Ticks sent to an instance, not answered", labels=labels
    )
    up = GaugeMetricFamily("pipelogic_instance_up", "1 while the instance is ready to run ticks", labels=labels)
    times = HistogramMetricFamily(
        "pipelogic_instance_tick_seconds", "How long an instance's ticks take, timed while it had work", labels=labels
    )
    for v in st.vertices:
        for i in v.get("instances") or []:
            key = [st.pipeline, v["name"], i["instance"]]
            ticks.add_metric(key, float(i["ticks"]))
            inflight.add_metric(key, float(i["inflight"]))
            up.add_metric(key, 1.0 if i["state"] == "running" else 0.0)
            if "tick_seconds" in i:
                times.add_metric(key, *_buckets(i["tick_seconds"]))
    yield ticks
    yield inflight
    yield up
    yield times


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # a scrape is not worth a line on the broker's stderr


def _family(host: str, port: int) -> socket.AddressFamily:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]


class _Body:
    """A response body whose ``close()`` (called by the server once it was written) says
    so: the final state is seen only when a scrape of it has been sent whole."""

    def __init__(self, chunks: Iterable[bytes], sent: Callable[[], None] | None) -> None:
        self._chunks = chunks
        self._sent = sent

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        if self._sent is not None:
            self._sent()


class MetricsServer:
    """The HTTP endpoint and the snapshot it serves."""

    def __init__(self, address: str) -> None:
        host, port = parse_address(address)
        self.collector = _Collector()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        inner = make_wsgi_app(registry)
        collector = self.collector

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            st = collector.status  # the final one, if the run has ended (it changes no more)
            body = inner(environ, start_response)
            return _Body(body, collector.final_scraped.set if st is not None and st.state != "running" else None)

        server_class = type("_Server", (_ThreadingServer,), {"address_family": _family(host, port)})
        self.server: WSGIServer = make_server(host, port, app, server_class, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)
        self.thread.start()
        self.url = f"http://{host}:{self.server.server_port}/metrics"
        self._next = 0.0

    def publish(self, status: Any, now: float, force: bool = False) -> None:
        """Take a snapshot (``status`` is a callable) if the last is older than PUBLISH_S."""
        if force or now >= self._next:
            self._next = now + PUBLISH_S
            self.collector.status = status()
            self.collector.at = now

    def linger(self, log: Callable[[str], None]) -> None:
        """After the run's end: serve its final state until a scrape has seen it, at most
        ``$PIPELOGIC_METRICS_LINGER_S`` seconds (default 15, a common scrape interval), so
        the last counters are recorded and not lost with the process."""
        limit = float(os.environ.get("PIPELOGIC_METRICS_LINGER_S", "15"))
        if limit > 0 and not self.collector.final_scraped.is_set():
            log(f"metrics: the final state stays at {self.url} until scraped (at most {limit:g} s)")
            self.collector.final_scraped.wait(limit)

    def release(self) -> None:
        """End :meth:`linger` now (the broker was told to stop)."""
        self.collector.final_scraped.set()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
