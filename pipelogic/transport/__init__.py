"""The zmq seam: sockets with safe options, endpoints, and frame lists in and out.

Everything above this module sees lists of frames; everything zmq-specific (options,
endpoint arithmetic, error translation) stays here.

Options we always set, and why:
- ``LINGER = 0`` on every socket: the default (-1) can hang ``Context.term()`` forever.
- ``IMMEDIATE = 1`` on connect-side PUSH: otherwise messages queue for a peer that is not
  there yet and are stranded if it never comes.
- ``MAXMSGSIZE``: a peer that sends a larger frame is disconnected (bounded memory).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from typing import Any, TypeAlias

import zmq
from zmq.utils.monitor import recv_monitor_message

from pipelogic.errors import HandshakeRefused
from pipelogic.keys import client_keys
from pipelogic.runs import DEFAULT_ADDRESS

# pyzmq's generic socket and context types, spelled once.
ZSocket: TypeAlias = "zmq.Socket[bytes]"
ZContext: TypeAlias = "zmq.Context[zmq.Socket[bytes]]"

__all__ = [
    "DEFAULT_BROKER",
    "COPY_BELOW",
    "MAX_FRAME_BYTES",
    "NOBLOCK",
    "bind",
    "bind_sibling",
    "broker_address",
    "connect",
    "peer_endpoint",
    "readable",
    "recv",
    "request",
    "send",
    "send_to",
    "shared_context",
    "term",
    "waiting",
    "ZContext",
    "ZSocket",
]

DEFAULT_BROKER = DEFAULT_ADDRESS  # a standalone broker's; `up` picks a free port (pipelogic/runs.py)
MAX_FRAME_BYTES = int(os.environ.get("PIPELOGIC_MAX_FRAME_BYTES", str(512 * 1024 * 1024)))
_TCP = re.compile(r"^tcp://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+|\*)$")


def broker_address(explicit: str | None = None) -> str:
    """``explicit``, else ``$PIPELOGIC_BROKER``, else the default loopback address."""
    return explicit or os.environ.get("PIPELOGIC_BROKER") or DEFAULT_BROKER


def _opts(sock: ZSocket, hwm: int | None = None) -> ZSocket:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    if hwm is not None:
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
    return sock


def bind(
    ctx: ZContext,
    kind: int,
    endpoint: str,
    hwm: int | None = None,
    curve: tuple[bytes, bytes] | None = None,
    domain: str = "pipelogic",
    max_frame: int | None = None,
    rcvhwm: int | None = None,
) -> tuple[ZSocket, str]:
    """Bind a new socket; returns it and the endpoint actually bound (port 0 -> real port).
    ``curve``: the server's (public, secret) key pair; then only clients the ZAP handler
    admits for ``domain`` can connect, and everything on the wire is encrypted.
    ``max_frame``: a peer sending a larger frame is disconnected (default MAX_FRAME_BYTES);
    ``rcvhwm``: messages queued per peer before zmq stops reading from it (overrides
    ``hwm`` for receiving); both set here because zmq copies options into the listener
    when it binds."""
    sock = _opts(ctx.socket(kind), hwm)
    if max_frame is not None:
        sock.setsockopt(zmq.MAXMSGSIZE, max_frame)
    if rcvhwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
    if curve is not None:
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = curve
        sock.zap_domain = domain.encode()
    ep = endpoint
    m = _TCP.match(endpoint)
    if m and m.group("port") == "0":
        ep = f"tcp://{m.group('host')}:*"
    try:
        sock.bind(ep)
    except zmq.ZMQError:
        sock.close(0)
        raise
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


def bind_sibling(
    ctx: ZContext,
    kind: int,
    listen: str,
    suffix: str,
    hwm: int | None = None,
    curve: tuple[bytes, bytes] | None = None,
    domain: str = "pipelogic",
    max_frame: int | None = None,
    rcvhwm: int | None = None,
) -> tuple[ZSocket, str]:
    """Bind a data socket beside the control endpoint: a fresh port on the same interface
    for tcp, a sibling path for ipc (options as for :func:`bind`)."""
    m = _TCP.match(listen)
    if m:
        return bind(ctx, kind, f"tcp://{m.group('host')}:*", hwm, curve, domain, max_frame, rcvhwm)
    if listen.startswith(("ipc://", "inproc://")):
        return bind(ctx, kind, f"{listen}.{suffix}", hwm, curve, domain, max_frame, rcvhwm)
    raise ValueError(f"unsupported endpoint {listen!r}; use tcp://host:port or ipc://path")


def peer_endpoint(broker: str, advertised: str) -> str:
    """The endpoint a worker connects to for a data socket the broker bound.

    The broker advertises what it bound (``tcp://0.0.0.0:41234``); the worker reaches the
    broker by the host in its own ``PIPELOGIC_BROKER`` (``tcp://broker:5550``), so it keeps
    that host and takes the port. ipc and inproc endpoints are used as they are.
    """
    a = _TCP.match(advertised)
    b = _TCP.match(broker)
    if a and b:
        return f"tcp://{b.group('host')}:{a.group('port')}"
    return advertised


def connect(
    ctx: ZContext, kind: int, endpoint: str, hwm: int | None = None, routing_id: bytes | None = None
) -> ZSocket:
    """Connect a new socket, with the CurveZMQ keys the environment names, if any
    (:func:`pipelogic.keys.client_keys`), and ``routing_id`` as its identity."""
    sock = _client(ctx, kind, hwm, routing_id)
    sock.connect(endpoint)
    return sock


def _client(ctx: ZContext, kind: int, hwm: int | None = None, routing_id: bytes | None = None) -> ZSocket:
    """A new socket set up to connect (keys, identity, options), not connected yet."""
    sock = _opts(ctx.socket(kind), hwm)
    if routing_id is not None:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    keys = client_keys()
    if keys is not None:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys.public, keys.secret, keys.server
    if kind == zmq.PUSH:
        sock.setsockopt(zmq.IMMEDIATE, 1)
    return sock


# The hot path calls pyzmq's Cython socket methods directly: its Python wrappers
# (send_multipart, recv_multipart, flag enums) cost about 3 us per message, more than
# libzmq itself on small messages.
_RAW_SEND = zmq.backend.Socket.send
_RAW_RECV = zmq.backend.Socket.recv
_RAW_GET = zmq.backend.Socket.get
_ZMQ_POLL = zmq.backend.zmq_poll
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_SNDMORE = int(zmq.SNDMORE)
NOBLOCK = int(zmq.NOBLOCK)
COPY_BELOW = 64 * 1024  # smaller bytes are copied: cheaper than tracking a zero-copy frame


def send(sock: ZSocket, frames: Sequence[Any], flags: int = 0) -> None:
    """Send a multipart message. Frames of ``COPY_BELOW`` bytes and more (and received
    zmq.Frames, which are forwarded by reference) go zero-copy; the caller must not change
    such a buffer afterwards. With ``NOBLOCK``, zmq.Again means nothing was sent (a
    multipart message is queued whole or not at all)."""
    last = len(frames) - 1
    for i, f in enumerate(frames):
        _RAW_SEND(sock, f, flags if i == last else flags | _SNDMORE, type(f) is bytes and len(f) < COPY_BELOW)


def send_to(sock: ZSocket, routing_id: bytes, frames: Sequence[Any], flags: int = 0) -> None:
    """Send a multipart message to one peer of a ROUTER (with ``ROUTER_MANDATORY``).
    zmq.Again when that peer is not connected or cannot take it now: nothing was sent."""
    try:
        _RAW_SEND(sock, routing_id, flags | _SNDMORE, True)
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EHOSTUNREACH:
            raise zmq.Again() from None
        raise
    send(sock, frames, flags)  # the rest of an accepted message always goes


def waiting(sock: ZSocket) -> bool:
    """Whether a message can be received now. Cheaper than a receive that fails: pyzmq
    builds an exception for that (about 2.6 us here, against 1 us for this check)."""
    events: int = _RAW_GET(sock, _EVENTS)  # type: ignore[assignment]  # an int for EVENTS
    return bool(events & _POLLIN)


def readable(sock: ZSocket, timeout_ms: int) -> bool:
    """Wait up to ``timeout_ms`` (-1: for ever) for a message to receive on ``sock``.
    libzmq's poll without pyzmq's ``Socket.poll``, which builds a Poller each call (about
    8 us here: at one tick in flight a worker waits once per tick)."""
    return bool(_ZMQ_POLL([(sock, _POLLIN)], timeout_ms))


def term(ctx: ZContext, timeout_s: float = 2.0) -> bool:
    """Terminate ``ctx``, whose sockets are closed, waiting at most ``timeout_s``; False
    if it did not finish (then it finishes in the background, or with the process).

    Why a bound: ``zmq_ctx_term`` waits for libzmq's I/O thread, and that thread resolves
    a connect's host name with a blocking getaddrinfo each time it reconnects. A worker
    that closes just after its broker container exited has sockets reconnecting to a
    name that no longer exists, and with a slow DNS server (Docker's embedded DNS asks the
    host's servers about names it does not know) each lookup blocks for seconds; an
    unbounded term then left a finished worker hanging until its health check killed it.
    Nothing is lost by not waiting: every socket has LINGER 0."""
    done = threading.Event()

    def run() -> None:
        try:
            ctx.term()
        finally:
            done.set()

    threading.Thread(target=run, name="pipelogic-zmq-term", daemon=True).start()
    return done.wait(timeout_s)


def recv(sock: ZSocket, flags: int = 0) -> list[Any]:
    """Receive a multipart message as zmq.Frame objects (no copy of large payloads; a
    frame's ``.buffer`` reads it). With ``NOBLOCK``, zmq.Again when no message is waiting."""
    f = _RAW_RECV(sock, flags, False)
    frames: list[Any] = [f]
    while f.more:  # not getsockopt(RCVMORE): pyzmq turns its option into an enum, 1.5 us a call
        f = _RAW_RECV(sock, 0, False)
        frames.append(f)
    return frames


_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


def shared_context() -> ZContext:
    """The process's shared zmq context (for short-lived clients such as the CLI's)."""
    return zmq.Context.instance()


def request(ctx: ZContext, endpoint: str, frames: Sequence[Any], timeout_s: float) -> list[bytes] | None:
    """One request/reply over a fresh DEALER (so a lost reply cannot wedge the next
    request): returns the reply frames without the empty delimiter, or None on timeout.
    Raises HandshakeRefused at once when the broker's security handshake fails (a socket
    monitor sees it; zmq itself would only retry in silence)."""
    sock = _client(ctx, zmq.DEALER)
    # The monitor first: a handshake that fails before it is attached is never reported,
    # and libzmq does not try again after a mechanism mismatch.
    monitor = sock.get_monitor_socket(_HANDSHAKE_FAILED)
    try:
        sock.connect(endpoint)
        sock.send_multipart([b"", *frames])
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        events = dict(poller.poll(int(timeout_s * 1000)))
        if sock not in events:
            if monitor in events:
                raise HandshakeRefused(_handshake_failure(endpoint, recv_monitor_message(monitor)))
            return None
        reply = sock.recv_multipart()
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
    return reply[1:] if reply and reply[0] == b"" else reply


def _handshake_failure(endpoint: str, event: Any) -> str:
    keys = client_keys()
    if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        key = keys.source if keys is not None else "(none)"
        return (
            f"the broker at {endpoint} refused this client's key {key} (unknown to it, revoked, "
            "or not allowed for this)"
        )
    if keys is None:
        return (
            f"the broker at {endpoint} requires CurveZMQ keys and this client has none (set PIPELOGIC_KEYS "
            "to a key folder, or PIPELOGIC_CURVE_KEY and PIPELOGIC_CURVE_SERVER_KEY; docs/security.md)"
        )
    if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return (
            f"the broker at {endpoint} does not use CurveZMQ keys, but this client has {keys.source} "
            "(unset PIPELOGIC_KEYS / PIPELOGIC_CURVE_KEY, or start the broker with --keys)"
        )
    return (
        f"the CurveZMQ handshake with the broker at {endpoint} failed: is the broker key this client has "
        "(PIPELOGIC_CURVE_SERVER_KEY, or broker.key in PIPELOGIC_KEYS) that broker's public key?"
    )
