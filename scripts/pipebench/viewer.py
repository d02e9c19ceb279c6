"""The web view beside a benchmarked broker: served with nobody watching, or with a page's
traffic (the events stream, a tap of the worker's output polled every 0.3 s, the vertex's
details every 2 s), so its cost on the hot path can be read against the same run without it."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any


class View:
    def __init__(self, broker: Any, watching: bool) -> None:
        from backend_stub.ui import UiServer, serve_ui

        self.server = serve_ui(broker, UiServer("127.0.0.1", 0))
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._events, daemon=True),
            threading.Thread(target=self._page, daemon=True),
        ]
        if watching:
            for t in self.threads:
                t.start()

    def _events(self) -> None:
        try:
            with urllib.request.urlopen(self.server.url + "api/events", timeout=30) as events:
                while not self.stop.is_set() and events.readline():
                    pass
        except OSError:
            pass  # the broker stopped serving

    def _page(self) -> None:
        cursor, n = -1, 0
        while not self.stop.wait(0.3):
            try:
                with urllib.request.urlopen(self.server.url + f"api/tap/d/0?cursor={cursor}", timeout=10) as r:
                    cursor = json.loads(r.read())["next"]
                n += 1
                if n % 7 == 0:
                    with urllib.request.urlopen(self.server.url + "api/vertex/d", timeout=10) as r:
                        r.read()
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.server.close()
        for t in self.threads:
            if t.is_alive():
                t.join(5)
