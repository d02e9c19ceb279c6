"""The broker's live web view (``--ui [HOST:]PORT``): the pipeline as a graph with its
rates and queues, each vertex's config and logs, live taps with pictures.

:func:`serve_ui` starts it beside a :class:`~backend_stub.broker.Broker`; the pieces are
``bridge`` (calls carried out on the broker's loop thread), ``views`` (what the page
shows, plain code) and ``server`` (HTTP, on threads of its own). See docs/ui.md.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend_stub.ui.bridge import LoopBridge
from backend_stub.ui.server import Backend, UiServer, is_loopback
from backend_stub.ui.views import graph_of, vertex_detail
from pipelogic import protocol as P

if TYPE_CHECKING:
    from backend_stub.broker import Broker

__all__ = ["UiServer", "serve_ui"]


def serve_ui(broker: Broker, server: UiServer, log_dir: Path | None = None) -> UiServer:
    """Serve the view of ``broker``'s pipeline on ``server`` (bound, not started) until it is
    closed. ``log_dir``: where the workers' lines are kept (``pipelogic up`` keeps them in
    the run's ``logs`` folder)."""
    bridge = LoopBridge()
    sch = broker.scheduler

    def ask(cid: bytes, msg: P.Message) -> None:
        broker.carry_out(broker.desk.ask(cid, msg, time.monotonic()))

    def detail(name: str) -> dict[str, Any] | None:
        vs = sch.vertices.get(name)
        return vertex_detail(sch.pipeline, vs) if vs is not None else None

    # The graph does not change while the broker serves: read once, before the loop runs.
    backend = Backend(bridge, graph_of(sch.pipeline, sch.vertices), broker.status, ask, detail, log_dir)
    if not is_loopback(server.host) and not server.published:
        logging.getLogger("backend_stub").warning(
            "the web view is served on %s:%d, not on loopback: anyone who can reach it sees the pipeline's data "
            "and can change its config, keys or not (serve it on 127.0.0.1 and reach it through an SSH tunnel, "
            "or publish it on the host's loopback only)",
            server.host,
            server.port,
        )
    broker.ui = bridge
    return server.start(backend)
