"""A control-plane client of the broker: status and live config (used by the CLI)."""

from __future__ import annotations

from typing import Any

from pipelogic import protocol as P
from pipelogic import transport
from pipelogic.errors import BrokerUnavailable, ProtocolError

__all__ = ["BrokerClient"]


class BrokerClient:
    """Request/reply over a DEALER socket; every call has a timeout and a fresh socket, so
    a lost reply can never wedge the next request."""

    def __init__(self, address: str | None = None, timeout_s: float = 5.0) -> None:
        self.address = transport.broker_address(address)
        self.timeout_s = timeout_s

    def request(self, msg: P.Message, timeout_s: float | None = None) -> P.Message:
        return self.exchange(msg, timeout_s)[0]

    def exchange(self, msg: P.Message, timeout_s: float | None = None) -> tuple[P.Message, list[Any]]:
        """Send ``msg``; the reply and its payload frames. A Refuse raises ProtocolError."""
        t = self.timeout_s if timeout_s is None else timeout_s
        frames = transport.request(transport.shared_context(), self.address, P.encode(msg), t)
        if frames is None:
            raise BrokerUnavailable(f"no answer from the broker at {self.address} within {t:g} s")
        reply, payload = P.decode(frames, P.REPLY)
        if isinstance(reply, P.Refuse):
            raise ProtocolError(f"the broker refused the request: {reply.reason}")
        return reply, payload

    def tap(self, vertex: str, stream: int, cursor: int, limit: int = 1000) -> tuple[P.TapReply, list[Any]]:
        """One poll of a tap (see :class:`pipelogic.protocol.Tap`)."""
        reply, payload = self.exchange(P.Tap(vertex, stream, cursor, limit))
        assert isinstance(reply, P.TapReply)
        return reply, payload

    def status(self) -> P.StatusReply:
        reply = self.request(P.StatusRequest())
        assert isinstance(reply, P.StatusReply)
        return reply

    def config_set(self, vertex: str, values: dict[str, Any], wait_s: float = 5.0) -> P.ConfigReply:
        reply = self.request(P.ConfigSet(vertex, values, int(wait_s * 1000)), timeout_s=wait_s + self.timeout_s)
        assert isinstance(reply, P.ConfigReply)
        return reply
