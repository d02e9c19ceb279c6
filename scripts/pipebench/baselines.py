"""Raw pyzmq baselines and the ceilings of our message shape (no pipelogic in the loop)."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

from .components import FRAME_SHAPE, PAYLOAD

# -- the raw baseline ------------------------------------------------------------------------


def _echo(endpoint_in: str, endpoint_out: str, frames: bool) -> None:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.connect(endpoint_in)
    push = ctx.socket(zmq.PUSH)
    push.connect(endpoint_out)
    if frames:
        import numpy as np
    while True:
        if frames:
            f = pull.recv(copy=False)
            if len(f) == 4:
                break
            a = np.frombuffer(f.buffer, np.uint8)
            push.send(a * 2, copy=False)  # type: ignore[call-overload]  # an ndarray is a buffer; the stubs say no
            continue
        frame = pull.recv()
        if frame == b"stop":
            break
        x, pad = msgpack.unpackb(frame)
        push.send(msgpack.packb([x * 2, pad]))
    pull.close(0)
    push.close(0)
    ctx.term()


def raw(n: int, inflight: int, frames: bool = False) -> tuple[float, list[float]]:
    """(messages per second, round trips in seconds) of the raw baseline."""
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    p1 = push.bind_to_random_port("tcp://127.0.0.1")
    p2 = pull.bind_to_random_port("tcp://127.0.0.1")
    proc = mp.get_context("spawn").Process(
        target=_echo, args=(f"tcp://127.0.0.1:{p1}", f"tcp://127.0.0.1:{p2}", frames)
    )
    proc.start()
    if frames:
        import numpy as np

        pool = [np.full(FRAME_SHAPE, i, np.uint8) for i in range(4)]
        make: Callable[[int], Any] = lambda i: pool[i % 4]  # noqa: E731
    else:
        make = lambda i: msgpack.packb([i, PAYLOAD])  # noqa: E731
    push.send(make(0), copy=False)
    pull.recv(copy=False)  # connected both ways
    sent = got = 0
    stamps: list[float] = []
    rtts: list[float] = []
    t0 = time.perf_counter()
    while got < n:
        while sent < n and sent - got < inflight:
            stamps.append(time.perf_counter())
            push.send(make(sent), copy=False)
            sent += 1
        f = pull.recv(copy=False)
        if not frames:
            msgpack.unpackb(f.buffer)
        rtts.append(time.perf_counter() - stamps[got])
        got += 1
    elapsed = time.perf_counter() - t0
    push.send(b"stop")
    proc.join(10)
    push.close(0)
    pull.close(0)
    ctx.term()
    return n / elapsed, rtts


# -- the same sockets and frames with no runtime: what any Python runtime of this shape reaches --


def _shaped_echo(tick_endpoint: str, result_endpoint: str, hold: int) -> None:
    """A worker reduced to its sockets and frames: ticks ``[header, value]`` on a DEALER
    under a routing id, results ``[header, value...]`` on a PUSH, up to ``hold`` of them per
    message while more ticks wait (as our worker holds them), a poll before each wait."""
    from pipelogic.transport import recv, send, waiting

    ctx = zmq.Context()
    ticks = ctx.socket(zmq.DEALER)
    ticks.setsockopt(zmq.ROUTING_ID, b"w")
    ticks.connect(tick_endpoint)
    results = ctx.socket(zmq.PUSH)
    results.connect(result_endpoint)
    ticks.send(b"hi")
    layout: list[Any] = []
    values: list[bytes] = []
    while True:
        if not waiting(ticks):
            ticks.poll(1000)
        head, value = (f.bytes for f in recv(ticks))
        if value == b"stop":
            break
        tick = msgpack.unpackb(head)[2]["layout"][0][0]
        x, pad = msgpack.unpackb(value)
        layout.append([tick, [[0]], None])
        values.append(msgpack.packb([x * 2, pad]))
        if len(layout) < hold and waiting(ticks):
            continue
        send(results, [msgpack.packb([1, "results", {"epoch": 1, "layout": layout, "stats": None}]), *values])
        layout, values = [], []
    ctx.destroy(0)


def shaped(n: int, inflight: int) -> tuple[float, list[float]]:
    """(messages per second, round trips) of raw pyzmq in our message shape: a ROUTER
    sends each tick as ``[routing id, msgpack header, value]`` to a worker process that
    answers on a PUSH with held results (``_shaped_echo``); this side polls both sockets
    like the broker's loop. The work per message is the packing a runtime cannot avoid, so
    this is the ceiling of any Python runtime built on these sockets and frames. Both sides
    use :mod:`pipelogic.transport`'s calls (pyzmq's Cython socket methods, as ours do)."""
    from pipelogic.transport import recv, send_to, waiting

    ctx = zmq.Context()
    router, pull = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PULL)
    p1 = router.bind_to_random_port("tcp://127.0.0.1")
    p2 = pull.bind_to_random_port("tcp://127.0.0.1")
    proc = mp.get_context("spawn").Process(
        target=_shaped_echo, args=(f"tcp://127.0.0.1:{p1}", f"tcp://127.0.0.1:{p2}", max(1, inflight // 2))
    )
    proc.start()
    rid, _ = router.recv_multipart()
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(pull, zmq.POLLIN)
    sent = got = 0
    stamps: list[float] = []
    rtts: list[float] = []
    t0 = time.perf_counter()
    while got < n:
        while sent < n and sent - got < inflight:
            stamps.append(time.perf_counter())
            head = msgpack.packb([1, "ticks", {"epoch": 1, "layout": [[sent, [[0]], None]]}])
            send_to(router, rid, [head, msgpack.packb([sent, PAYLOAD])])
            sent += 1
        poller.poll(1000)
        while waiting(pull):
            head = recv(pull)[0]
            for _ in msgpack.unpackb(head.buffer)[2]["layout"]:
                rtts.append(time.perf_counter() - stamps[got])
                got += 1
    elapsed = time.perf_counter() - t0
    router.send_multipart([rid, b"", b"stop"])
    proc.join(10)
    ctx.destroy(0)
    return n / elapsed, rtts


def _relay(endpoint_in: str, endpoint_ack: str, ports: Any) -> None:
    """The middle of :func:`relayed`: forward each frame to the worker, take its answer,
    drop it (a null sink) and acknowledge to the sender. Frames are forwarded by reference."""
    ctx = zmq.Context()
    pull, work, back, ack = (ctx.socket(k) for k in (zmq.PULL, zmq.PUSH, zmq.PULL, zmq.PUSH))
    pull.connect(endpoint_in)
    ack.connect(endpoint_ack)
    ports.send((work.bind_to_random_port("tcp://127.0.0.1"), back.bind_to_random_port("tcp://127.0.0.1")))
    while True:
        f = pull.recv(copy=False)
        work.send(f, copy=False)
        if len(f) == 4:
            break
        back.recv(copy=False)
        ack.send(b"ok")
    ctx.destroy(0)


def relayed(n: int) -> float:
    """Frames per second of raw pyzmq in our frames topology: a sender -> a relay process ->
    a process returning ``frame * 2`` -> the relay, one frame in flight, all zero-copy. A
    frame crosses three sockets, as a camera's frame does through our broker to a worker
    and back (the raw round trip crosses two)."""
    import numpy as np

    ctx = zmq.Context()
    push, ack = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    p_in = push.bind_to_random_port("tcp://127.0.0.1")
    p_ack = ack.bind_to_random_port("tcp://127.0.0.1")
    spawn = mp.get_context("spawn")
    mine, theirs = spawn.Pipe()
    relay = spawn.Process(target=_relay, args=(f"tcp://127.0.0.1:{p_in}", f"tcp://127.0.0.1:{p_ack}", theirs))
    relay.start()
    p_work, p_back = mine.recv()
    echo = spawn.Process(target=_echo, args=(f"tcp://127.0.0.1:{p_work}", f"tcp://127.0.0.1:{p_back}", True))
    echo.start()
    pool = [np.full(FRAME_SHAPE, i, np.uint8) for i in range(4)]
    push.send(pool[0], copy=False)  # type: ignore[call-overload]
    ack.recv()  # all connected
    t0 = time.perf_counter()
    for i in range(n):
        push.send(pool[i % 4], copy=False)  # type: ignore[call-overload]
        ack.recv()
    elapsed = time.perf_counter() - t0
    push.send(b"stop")
    relay.join(10)
    echo.join(10)
    ctx.destroy(0)
    return n / elapsed
