"""The web view's HTTP server: the page and its files, and a small JSON API over the broker.

Runs on threads of its own in the broker's process. It reads the broker only through the
:class:`~backend_stub.ui.bridge.LoopBridge` (calls carried out on the loop thread), so the
hot path pays one check of an empty deque per loop turn while nobody watches. While the
page is open it costs one status per half second whatever the number of viewers (one
snapshot shared by all), and a tap's pictures are encoded only while someone polls it.

Routes (all GET but one):

- ``/`` the page; ``/static/NAME`` its scripts, styles and licenses (shipped in the package);
- ``/api/graph`` vertices and edges; ``/api/state`` one snapshot of the live figures;
  ``/api/events`` the same as server-sent events, twice a second;
- ``/api/vertex/NAME`` config (typed by config_schema), file slots, recent log lines;
- ``/api/tap/VERTEX/OUTPUT?cursor=N&max_side=PX`` a tap's values, pictures as data URLs;
- ``POST /api/config/VERTEX`` ``{"key": "value", ...}``: ``pipelogic config set``'s
  validation and answer (``ok``, ``version``, ``applied``, ``error``).

A browser on the same machine is kept out of reach of other sites: a request must name this
server in its ``Host`` (no DNS rebinding), and a POST must be JSON from the page's own
origin (a form on another site cannot send it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from backend_stub.ui.bridge import LoopBridge
from backend_stub.ui.views import Rates, log_tail, tap_values
from pipelogic import protocol as P

__all__ = ["Backend", "UiServer", "is_loopback"]

log = logging.getLogger("backend_stub")

STATIC = Path(__file__).with_name("static")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
EVENT_S = 0.5  # how often the page's figures are sent
MAX_BODY = 64 * 1024
TAP_NEWEST = 10  # a tap poll takes the newest this many (the page shows the newest; boxes may need more)
OVER_NEWEST = 32  # of the stream boxes are drawn over: enough to hold the boxes' own picture


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class Backend:
    """What the server asks of the broker, each carried out on its loop thread."""

    def __init__(
        self,
        bridge: LoopBridge,
        graph: dict[str, Any],
        status: Callable[[], P.StatusReply],
        ask: Callable[[bytes, P.Message], None],
        detail: Callable[[str], dict[str, Any] | None],
        log_dir: Path | None,
    ) -> None:
        self.bridge = bridge
        self.graph = graph
        self._status = status
        self._ask = ask
        self._detail = detail
        self.log_dir = log_dir
        self.rates = Rates(graph)
        self._lock = threading.Lock()
        self._snap: tuple[float, dict[str, Any]] | None = None

    def snapshot(self) -> dict[str, Any]:
        """The live figures, at most EVENT_S old (one status for every viewer)."""
        with self._lock:
            now = time.monotonic()
            if self._snap is None or now - self._snap[0] >= EVENT_S * 0.8:
                st = self.bridge.call(self._status)
                self._snap = (now, self.rates.update(st, now))
            return self._snap[1]

    def request(self, msg: P.Message, wait_s: float) -> tuple[P.Message, list[Any]]:
        """A control request answered as the control socket answers it."""
        cid, fut = self.bridge.client()
        try:
            self.bridge.call(lambda: self._ask(cid, msg))
            frames = fut.result(wait_s)
        finally:
            self.bridge.forget(cid)
        return P.decode(frames, P.REPLY)

    def detail(self, name: str) -> dict[str, Any] | None:
        d: dict[str, Any] | None = self.bridge.call(lambda: self._detail(name))
        if d is not None:
            d["logs"] = log_tail(self.log_dir, name)
            d["logs_kept"] = self.log_dir is not None and self.log_dir.is_dir()
        return d


class UiServer:
    """Serve the view at ``host:port`` (port 0: a free one) until :meth:`close`."""

    def __init__(self, host: str, port: int, published: str | None = None) -> None:
        """Bind now (OSError if it cannot); serve from :meth:`start`. ``published``:
        ``HOST:PORT`` where the view is reached instead (a container's port published on
        the host's loopback): the URL said, and the only ``Host`` accepted."""
        self.backend: Backend | None = None
        self.stopping = threading.Event()
        server = self

        class Handler(_Handler):
            ui = server

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self.published = published
        shown = f"[{host}]" if ":" in host else host
        self.allowed_hosts: set[str] | None
        if published:
            self.url = f"http://{published}/"
            pub_port = published.rpartition(":")[2]
            self.allowed_hosts = {published, f"localhost:{pub_port}", f"127.0.0.1:{pub_port}"}
        elif is_loopback(host):
            self.url = f"http://{shown}:{self.port}/"
            self.allowed_hosts = {f"{h}:{self.port}" for h in ("localhost", "127.0.0.1", "[::1]", shown)}
        else:  # told to serve elsewhere: any name may reach it
            self.url = f"http://{shown if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{self.port}/"
            self.allowed_hosts = None
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="pipelogic-ui", daemon=True)

    def start(self, backend: Backend) -> UiServer:
        self.backend = backend
        self._thread.start()
        return self

    def close(self) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(5)
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    ui: UiServer
    protocol_version = "HTTP/1.1"
    server_version = "pipelogic-ui"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("ui: " + format, *args)

    # -- the routes ------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        try:
            if not parts:
                return self._file("index.html")
            if parts[0] == "static" and len(parts) == 2:
                return self._file(parts[1])
            if parts[0] != "api" or len(parts) < 2:
                return self._error(HTTPStatus.NOT_FOUND, f"no page at {url.path}")
            backend = self.ui.backend
            assert backend is not None  # set before the server thread starts
            if parts[1:] == ["graph"]:
                return self._json(backend.graph)
            if parts[1:] == ["state"]:
                return self._json(backend.snapshot())
            if parts[1:] == ["events"]:
                return self._events()
            if parts[1] == "vertex" and len(parts) == 3:
                d = backend.detail(parts[2])
                return self._json(d) if d is not None else self._error(HTTPStatus.NOT_FOUND, f"no vertex {parts[2]!r}")
            if parts[1] == "tap" and len(parts) == 4:
                return self._tap(parts[2], parts[3], parse_qs(url.query))
            return self._error(HTTPStatus.NOT_FOUND, f"no API at {url.path}")
        except (TimeoutError, ConnectionError) as exc:
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"the broker did not answer: {exc or 'timed out'}")
        except Exception:
            log.exception("ui: %s failed", url.path)
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{url.path} failed (the broker's log has why)")

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        try:
            self._post()
        except Exception:  # as in do_GET: logged with its traceback, answered 500
            log.exception("ui: POST %s failed", self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{self.path} failed (the broker's log has why)")

    def _post(self) -> None:
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
        if len(parts) != 3 or parts[:2] != ["api", "config"]:
            return self._error(HTTPStatus.NOT_FOUND, f"no API at {self.path}")
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host')}":
            return self._error(HTTPStatus.FORBIDDEN, f"a request from {origin}, not from this page")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return self._error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "expected a JSON body (Content-Type: application/json)"
            )
        length = self.headers.get("Content-Length") or "0"
        n = int(length) if length.isdigit() else -1
        if not 0 < n <= MAX_BODY:
            return self._error(HTTPStatus.BAD_REQUEST, f"expected a JSON object of at most {MAX_BODY} bytes")
        try:
            values = json.loads(self.rfile.read(n))
        except ValueError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {exc}")
        if not isinstance(values, dict) or not values:
            return self._error(HTTPStatus.BAD_REQUEST, 'expected {"key": value, ...}')
        wait_s = 5.0
        assert self.ui.backend is not None
        try:
            reply, _ = self.ui.backend.request(P.ConfigSet(parts[2], values, int(wait_s * 1000)), wait_s + 5)
        except (TimeoutError, ConnectionError) as exc:
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"the broker did not answer: {exc or 'timed out'}")
        if isinstance(reply, P.Refuse):
            return self._json({"ok": False, "version": 0, "applied": False, "error": reply.reason})
        assert isinstance(reply, P.ConfigReply)
        self._json({"ok": reply.ok, "version": reply.version, "applied": reply.applied, "error": reply.error})

    def _tap(self, vertex: str, output: str, query: dict[str, list[str]]) -> None:
        """One poll of a tap, for its newest values (a fast stream is shown as it is now, not
        as it was when the page fell behind); with ``over=VERTEX.OUTPUT``, one of the stream
        of pictures its boxes are drawn over, in the same answer, from the same message
        number (the tap's ring keeps the recent ones), so the picture a box was found in is
        there to draw."""
        try:
            cursor = int(query.get("cursor", ["-1"])[0])
            index = int(output)
            max_side = min(max(int(query.get("max_side", ["480"])[0]), 16), 4096)
            over_at = query.get("over", [""])[0].rpartition(".")
            over_stream = (over_at[0], int(over_at[2])) if over_at[0] else None
        except ValueError:
            return self._error(HTTPStatus.BAD_REQUEST, "expected integers: output, cursor, max_side, over's output")
        backend = self.ui.backend
        assert backend is not None
        reply, payload = backend.request(P.Tap(vertex, index, cursor, TAP_NEWEST, newest=True), 5.0)
        if isinstance(reply, P.Refuse):
            return self._error(HTTPStatus.NOT_FOUND, reply.reason)
        assert isinstance(reply, P.TapReply)
        over = None
        if over_stream is not None:
            o_reply, o_payload = backend.request(P.Tap(*over_stream, reply.first, OVER_NEWEST, newest=True), 5.0)
            if isinstance(o_reply, P.TapReply):
                over = (o_reply, o_payload)
        self._json(tap_values(reply, payload, max_side, over=over))

    def _events(self) -> None:
        """Server-sent events: the figures twice a second until the client or the broker goes."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.close_connection = True
        try:
            while not self.ui.stopping.is_set():
                assert self.ui.backend is not None
                try:
                    snap = self.ui.backend.snapshot()
                except (TimeoutError, ConnectionError):
                    self.wfile.write(b"event: gone\ndata: {}\n\n")
                    return
                self.wfile.write(b"data: " + json.dumps(snap).encode() + b"\n\n")
                self.wfile.flush()
                self.ui.stopping.wait(EVENT_S)
            self.wfile.write(b"event: gone\ndata: {}\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page was closed

    # -- answers ---------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        allowed = self.ui.allowed_hosts
        if allowed is not None and self.headers.get("Host") not in allowed:
            self._error(HTTPStatus.FORBIDDEN, f"Host {self.headers.get('Host')!r} is not this server")
            return False
        return True

    def _file(self, name: str) -> None:
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return self._error(HTTPStatus.NOT_FOUND, f"no file {name!r}")
        self._send(HTTPStatus.OK, path.read_bytes(), TYPES.get(path.suffix, "application/octet-stream"))

    def _json(self, body: Any) -> None:
        self._send(HTTPStatus.OK, json.dumps(body).encode(), "application/json")

    def _error(self, status: HTTPStatus, why: str) -> None:
        self._send(status, json.dumps({"error": why}).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)
