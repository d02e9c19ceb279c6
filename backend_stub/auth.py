"""The broker's CurveZMQ admission: who may connect (pyzmq's ZAP handler asks
:meth:`KeyRing.callback`) and, per message, as whom.

ZAP domains: the control and results sockets use ``pipelogic`` (any known worker or
operator key may connect; each message is then checked against what its key may do); the
tick socket of worker incarnation N uses ``wN``, which admits only the key that
registered N, so no other key can connect to it and take that worker's ticks.

The key folder is reread when its files change (:meth:`KeyRing.reload`, called by the
broker's loop about once a second); a deleted key is refused from then on, and the broker
drops the live incarnations it registered.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from pipelogic.errors import KeyFileError
from pipelogic.keys import list_keys
from pipelogic.transport import ZContext

__all__ = ["CONTROL_DOMAIN", "KeyRing", "start_authenticator", "worker_domain"]

CONTROL_DOMAIN = "pipelogic"
_LOG_EVERY_S = 10.0


def worker_domain(epoch: int) -> str:
    return f"w{epoch}"


class KeyRing:
    """The keys of one key folder, as the broker uses them. The ZAP thread calls
    :meth:`callback`; the loop thread reloads; shared tables are replaced whole, never
    changed in place, so the two threads need no lock."""

    def __init__(self, folder: Path, log: logging.Logger) -> None:
        self.folder = Path(folder)
        self._log = log
        secret = self.folder / "broker.key_secret"
        try:
            public, sec = zmq.auth.load_certificate(str(secret))
        except (OSError, ValueError) as exc:
            raise KeyFileError(
                f"{secret}: the broker's secret key cannot be read ({exc}); "
                f"`pipelogic keys init {self.folder}` makes one"
            ) from None
        if sec is None:
            raise KeyFileError(f"{secret}: holds no secret key")
        self.server: tuple[bytes, bytes] = (public, sec)
        self.workers: dict[bytes, tuple[str, tuple[str, ...]]] = {}  # key -> (name, vertices)
        self.operators: dict[bytes, str] = {}
        self.epoch_keys: dict[str, bytes] = {}  # ZAP domain of a tick socket -> the one key it admits
        self._stamp: tuple[tuple[str, float], ...] = ()
        self._next_log: dict[bytes, float] = {}
        self.reload()

    def name(self, key: bytes | None) -> str:
        if key is None:
            return "no key"
        if key in self.workers:
            return f"worker key {self.workers[key][0]!r}"
        if key in self.operators:
            return f"operator key {self.operators[key]!r}"
        return f"unknown key {key.decode(errors='replace')[:12]}..."

    def reload(self) -> set[bytes]:
        """Reread the folder if a key file changed; returns the keys that are gone."""
        try:
            stamp = tuple(sorted((str(p), p.stat().st_mtime) for p in self.folder.rglob("*.key")))
        except OSError:
            return set()
        if stamp == self._stamp:
            return set()
        try:
            infos = list_keys(self.folder)
        except KeyFileError as exc:
            self._log.error("keys: %s; keeping the keys loaded before", exc)
            return set()
        self._stamp = stamp
        workers = {k.public: (k.name, k.vertices) for k in infos if k.role == "worker"}
        operators = {k.public: k.name for k in infos if k.role == "operator"}
        gone = (set(self.workers) | set(self.operators)) - (set(workers) | set(operators))
        self.workers, self.operators = workers, operators
        if gone:
            self.epoch_keys = {d: k for d, k in self.epoch_keys.items() if k not in gone}
        return gone

    def may_register(self, key: bytes | None, vertex: str) -> str | None:
        """Why ``key`` may not register as ``vertex`` (None: it may)."""
        entry = self.workers.get(key) if key is not None else None
        if entry is None:
            return f"vertex {vertex}: {self.name(key)} is not a worker key"
        if vertex not in entry[1]:
            return (
                f"vertex {vertex}: worker key {entry[0]!r} is authorised for "
                f"{', '.join(entry[1]) or 'no vertex'}, not {vertex}"
            )
        return None

    def is_operator(self, key: bytes | None) -> bool:
        return key is not None and key in self.operators

    def admit_tick_socket(self, epoch: int, key: bytes) -> None:
        self.epoch_keys = {**self.epoch_keys, worker_domain(epoch): key}

    def forget_tick_socket(self, epoch: int) -> None:
        self.epoch_keys = {d: k for d, k in self.epoch_keys.items() if d != worker_domain(epoch)}

    # -- the ZAP thread ----------------------------------------------------------------------

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's CURVE credentials callback: may ``key`` (z85) connect in ``domain``?"""
        if domain == CONTROL_DOMAIN:
            ok = key in self.workers or key in self.operators
        else:
            ok = self.epoch_keys.get(domain) == key
        if not ok:
            now = time.monotonic()
            if now >= self._next_log.get(key, 0.0):
                # A flood of random keys must not grow this table without bound.
                base = self._next_log if len(self._next_log) < 1024 else {}
                self._next_log = {**base, key: now + _LOG_EVERY_S}
                where = "the control or results socket" if domain == CONTROL_DOMAIN else f"tick socket {domain}"
                self._log.warning("keys: refused a connection to %s from %s", where, self.name(key))
        return ok


def start_authenticator(ctx: ZContext, ring: KeyRing) -> ThreadAuthenticator:
    """Run pyzmq's ZAP handler on ``ctx`` with ``ring`` deciding CURVE admissions."""
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(CONTROL_DOMAIN, credentials_provider=ring)
    return auth
