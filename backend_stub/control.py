"""The broker's control socket: handshakes, heartbeats, status, taps and live config.

Plain code like the scheduler: :meth:`ControlDesk.handle` takes one message's frames and
returns the actions to carry out. Every refusal is counted and logged per peer; no request
can crash the broker. What needs the sockets (binding a worker's tick socket for a Hello
the scheduler accepts) is the broker's ``hello`` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend_stub.admission import HelloLimiter
from backend_stub.auth import KeyRing
from backend_stub.bounds import CONTROL_MAX_BYTES, CONTROL_MAX_FRAMES, total
from backend_stub.model import Action, Reply
from backend_stub.scheduler import Scheduler
from pipelogic import protocol as P
from pipelogic.errors import PipelogicError, ProtocolError, ProtocolVersionError, WrongDirection

__all__ = ["ControlDesk"]


class ControlDesk:
    """Answers the control socket's requests for ``scheduler``."""

    def __init__(
        self,
        scheduler: Scheduler,
        keys: KeyRing | None,
        epoch_keys: dict[int, bytes],
        instance: str,
        status: Callable[[], P.StatusReply],
        hello: Callable[[bytes, P.Hello, float, bytes | None], list[Action]],
        drop: Callable[[int], None],
    ) -> None:
        self.scheduler = scheduler
        self.keys = keys  # with keys, each message is checked against what its key may do
        self.epoch_keys = epoch_keys  # the key that registered each live incarnation (shared)
        self.instance = instance  # this broker process: workers tell a restart by it
        self.status = status
        self.hello = hello  # binds the accepted worker's tick socket; its Welcome
        self.drop = drop  # the size of a message refused for its size (memory to give back)
        self.hellos = HelloLimiter(list(scheduler.vertices))

    def handle(self, frames: list[Any], now: float) -> list[Action]:
        """One message from the control socket (zmq.Frames, uncopied): what to do."""
        refuse = self.scheduler.refusals.refuse
        if len(frames) < 3 or bytes(frames[1]) != b"":
            refuse("control", "control: not a [client, empty, header, ...] message", now)
            return []
        # Frames arrive uncopied (zmq.Frames): a message over the limits is dropped before
        # anything is copied out of it. zmq already took it whole (it hands a multipart message
        # over only once all of it arrived): _drain gives that memory back once it is freed.
        size = total(frames)
        if len(frames) > CONTROL_MAX_FRAMES or size > CONTROL_MAX_BYTES:
            refuse(
                "control",
                f"control: a message of {len(frames)} frames and {size:,} bytes (a control "
                f"message is one header of at most {P.MAX_HEADER_BYTES:,} bytes)",
                now,
            )
            self.drop(size)
            return []
        user: bytes | None = None
        if self.keys is not None:  # the ZAP handler's User-Id is on the frames
            user = (frames[2].get("User-Id") or "").encode() or None
            frames = [frames[0].bytes, b"", *frames[2:]]
        else:
            frames = [f.bytes for f in frames]
        client = frames[0]
        try:
            msg, _ = P.decode(frames[2:], P.REQUEST)
            if self.keys is not None and (why := self._not_allowed(msg, user)) is not None:
                refuse(self.keys.name(user), f"control: {why}", now)  # counted and logged per key
                return [Reply(client, P.encode(P.Refuse(why)))]
        except ProtocolError as exc:
            refuse("control", f"control: {exc}", now)
            # A client that sent a message of another direction or version is told why.
            if isinstance(exc, (ProtocolVersionError, WrongDirection)):
                return [Reply(client, P.encode(P.Refuse(str(exc))))]
            return []
        try:
            if isinstance(msg, P.Hello):
                if not self.hellos.allow(msg.vertex, now):
                    why = f"too many handshakes for vertex {msg.vertex} (at most {self.hellos.rate:g} a second)"
                    refuse("control", f"control: retry later: {why}", now)
                    return [Reply(client, P.encode(P.Refuse(why, P.RETRY_LATER)))]
                return self.hello(client, msg, now, user)
            if isinstance(msg, P.Heartbeat):
                alive = self.scheduler.heartbeat(msg.epoch, msg.stats, now)
                return [Reply(client, P.encode(P.Pong(msg.epoch, alive, self.instance)))]
            answer = self._operator(client, msg, now)
            if answer is not None:
                return answer
        except PipelogicError as exc:
            refuse("control", f"control: {msg.KIND} failed: {exc}", now)  # logged at most once per interval
            return [Reply(client, P.encode(P.Refuse(str(exc))))]
        except Exception as exc:  # noqa: BLE001 - no request may crash the broker; refuse() logs the traceback
            refuse("control", f"control: internal error while handling {msg.KIND}", now, bug=True)
            return [Reply(client, P.encode(P.Refuse(f"{msg.KIND} failed: {type(exc).__name__}")))]
        # Only a request kind with no handler above reaches here (a kind added to
        # P.DIRECTIONS[REQUEST] alone): refused, not ignored.
        refuse("control", f"control: {msg.KIND} is not a control request", now)
        return [Reply(client, P.encode(P.Refuse(f"{msg.KIND} is not a control request")))]

    def ask(self, client: bytes, msg: P.Message, now: float) -> list[Action]:
        """An operator's request from inside the broker's process (the web view, through
        :class:`~backend_stub.ui.bridge.LoopBridge`): answered as the control socket answers
        it, with no key check (the view serves only whom it was told to)."""
        try:
            answer = self._operator(client, msg, now)
        except PipelogicError as exc:
            return [Reply(client, P.encode(P.Refuse(str(exc))))]
        except Exception:  # noqa: BLE001 - as in handle(): logged with its traceback, refused
            self.scheduler.refusals.refuse(
                "web view", f"web view: internal error while handling {msg.KIND}", now, bug=True
            )
            return [Reply(client, P.encode(P.Refuse(f"{msg.KIND} failed")))]
        return answer if answer is not None else [Reply(client, P.encode(P.Refuse(f"{msg.KIND} is not asked here")))]

    def _operator(self, client: bytes, msg: P.Message, now: float) -> list[Action] | None:
        """The actions answering an operator's request (status, tap, config set); None for
        another kind."""
        if isinstance(msg, P.StatusRequest):
            return [Reply(client, P.encode(self.status()))]
        if isinstance(msg, P.Tap):
            reply, payload = self.scheduler.taps.poll(self.scheduler.vertices, msg, now)
            return [Reply(client, P.encode(reply, payload))]
        if isinstance(msg, P.ConfigSet):
            return self.scheduler.config_set(msg, client, now)
        return None

    def _not_allowed(self, msg: P.Message, user: bytes | None) -> str | None:
        """With keys: why the key ``user`` may not send ``msg`` on the control socket."""
        assert self.keys is not None
        if isinstance(msg, P.Hello):
            return self.keys.may_register(user, msg.vertex)
        if isinstance(msg, P.Heartbeat):
            if self.epoch_keys.get(msg.epoch) != user:
                return f"a heartbeat for epoch {msg.epoch} from {self.keys.name(user)}, which did not register it"
            return None
        if isinstance(msg, (P.StatusRequest, P.Tap, P.ConfigSet)) and not self.keys.is_operator(user):
            return f"{msg.KIND} needs an operator key; this client has {self.keys.name(user)}"
        return None
