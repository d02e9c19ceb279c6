"""The worker's handshake: Hello until Welcome (or a refusal, which raises)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from pipelogic import protocol as P
from pipelogic.component import ComponentSpec
from pipelogic.errors import BrokerUnavailable, ProtocolError, StateLocked, StopRequested
from pipelogic.shm import my_groups
from pipelogic.shm.worker import make_probe, remove_probe
from pipelogic.transport.link import Transport, handshake

__all__ = ["StopRequested", "greet", "hello_for", "instance_id"]

log = logging.getLogger("pipelogic.worker")


def instance_id() -> str:
    """This worker's instance id: ``PIPELOGIC_INSTANCE`` (``pipelogic up`` numbers a
    replicated vertex's instances), else host and pid. The broker takes a Hello with the id
    of a live instance for a restart of it (a container keeps its host name and usually its
    pid across restarts), and any other for one more instance of a replicated vertex."""
    return os.environ.get("PIPELOGIC_INSTANCE") or f"{socket.gethostname()}:{os.getpid()}"


def hello_for(
    vertex: str, input_types: list[str], output_types: list[str], join: bool = False, shm: str = ""
) -> P.Hello:
    """This worker's Hello; with a probe (``shm``), its groups too (pipelogic.shm.my_groups)."""
    return P.Hello(
        vertex=vertex,
        instance=instance_id(),
        pid=os.getpid(),
        features=[],
        inputs=len(input_types),
        outputs=len(output_types),
        host=socket.gethostname(),
        types=[input_types, output_types],
        join=join,
        shm=shm,
        groups=my_groups() if shm else None,
    )


def greet(
    transport: Transport,
    broker: str,
    spec: ComponentSpec,
    vertex: str,
    locked_out: StateLocked | None,
    timeout_s: float,
    rejoin: bool,
    stop_requested: Callable[[], bool],
) -> P.Welcome:
    """Hello until welcomed. Refusals and mismatches raise; no answer within
    ``timeout_s`` raises BrokerUnavailable. While rejoining, a SIGTERM ends the wait
    within a second (StopRequested)."""
    probe = make_probe()  # the broker finds it if it shares our shared-memory directory
    hello = hello_for(
        vertex,
        [str(t) for t in spec.input_types],
        [str(t) for t in spec.output_types],
        join=locked_out is not None,
        shm=probe,
    )
    waited: list[bool] = []

    def waiting() -> None:
        waited.append(True)
        if not rejoin:  # a rejoin said so already
            log.warning("vertex %s: waiting for the broker at %s (up to %g s)", vertex, broker, timeout_s)

    try:
        msg = handshake(transport, hello, timeout_s, stop_requested, 0.5 if rejoin else 2.0, waiting)
    finally:
        remove_probe(probe)
    if msg is None and stop_requested():
        raise StopRequested()
    if msg is None:
        raise BrokerUnavailable(
            f"vertex {vertex}: no answer from the broker at {broker} within "
            f"{timeout_s:g} s (set PIPELOGIC_BROKER? PIPELOGIC_CONNECT_TIMEOUT_S and "
            "PIPELOGIC_REJOIN_TIMEOUT_S set the waits)"
        )
    if waited:
        log.info("vertex %s: connected to the broker at %s", vertex, broker)
    if isinstance(msg, P.Refuse):
        if locked_out is not None and msg.code == P.ONE_INSTANCE:
            raise StateLocked(f"{locked_out} ({msg.reason})")
        raise ProtocolError(f"vertex {vertex}: the broker refused this worker: {msg.reason}")
    if not isinstance(msg, P.Welcome):
        raise ProtocolError(f"vertex {vertex}: expected welcome from the broker, got {msg.KIND}")
    if len(msg.input_types) != len(spec.input_types) or len(msg.output_types) != len(spec.output_types):
        raise ProtocolError(
            f"vertex {vertex}: the broker's pipeline has {len(msg.input_types)} input(s) and "
            f"{len(msg.output_types)} output(s) for this vertex, component.yml declares "
            f"{len(spec.input_types)} and {len(spec.output_types)}"
        )
    return msg
