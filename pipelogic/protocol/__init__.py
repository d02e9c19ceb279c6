"""The wire protocol between workers, the broker and the command line. No zmq here.

Modules: :mod:`~pipelogic.protocol.messages` (the message classes), :mod:`~pipelogic.protocol.wire`
(encoding, the strict decoder, payload slicing) and :mod:`~pipelogic.protocol.status` (the
shapes of the dictionaries messages carry).

A message is a list of frames::

    [header, payload...]

``header`` is msgpack ``[PROTOCOL_VERSION, kind, body]`` where ``body`` maps field names to
values (see the message classes below; every field is type-checked on decode). ``Ticks``
and ``Results`` carry stream values as payload: each value is one msgpack frame followed by
its out-of-band buffer frames (large ``Bytes``), and the header's ``layout`` says, per tick
and per stream, how many buffer frames follow each value frame. The broker slices payloads
by layout and forwards the frames untouched: it never decodes a user value on the hot path.

Directions (sockets in ``docs/protocol.md``):

- control, client DEALER -> broker ROUTER: Hello / Welcome / Refuse, StatusRequest /
  StatusReply, ConfigSet / ConfigReply, Tap / TapReply;
- control, worker DEALER -> broker ROUTER (the heartbeat thread): Heartbeat / Pong;
- data, broker ROUTER -> worker DEALER (one socket per worker incarnation, addressed by the
  routing id the Welcome names): Ticks, ConfigPush, Applied, Close;
- data, worker PUSH -> broker PULL: Ready, Results, Heartbeat, ConfigApplied, Failed, Finished,
  Sync, Checkpoint, Goodbye.

Decoding is strict and total: any input either yields a message or raises
:class:`ProtocolError` (:class:`ProtocolVersionError` for another version).
"""

from __future__ import annotations

from pipelogic.protocol.messages import (
    MAX_FRAMES,
    MAX_HEADER_BYTES,
    ONE_INSTANCE,
    PROTOCOL_VERSION,
    RETRY_LATER,
    Applied,
    Checkpoint,
    Close,
    ConfigApplied,
    ConfigPush,
    ConfigReply,
    ConfigSet,
    Failed,
    Finished,
    Goodbye,
    Heartbeat,
    Hello,
    Message,
    Pong,
    Ready,
    Refuse,
    Results,
    StatusReply,
    StatusRequest,
    Sync,
    Tap,
    TapReply,
    Ticks,
    Welcome,
)
from pipelogic.protocol.status import (
    LOSS_KINDS,
    BrokerInfo,
    Histogram,
    InstanceStatus,
    RunSettings,
    StreamStatus,
    VertexStatus,
    WorkerStats,
    losses,
)
from pipelogic.protocol.wire import (
    DIRECTIONS,
    REPLY,
    REQUEST,
    TO_BROKER,
    TO_WORKER,
    decode,
    decode_header,
    encode,
    encode_results,
    encode_ticks,
    split_values,
)

__all__ = [
    "DIRECTIONS",
    "LOSS_KINDS",
    "MAX_FRAMES",
    "MAX_HEADER_BYTES",
    "ONE_INSTANCE",
    "PROTOCOL_VERSION",
    "REPLY",
    "REQUEST",
    "RETRY_LATER",
    "TO_BROKER",
    "TO_WORKER",
    "Applied",
    "BrokerInfo",
    "Checkpoint",
    "Close",
    "ConfigApplied",
    "ConfigPush",
    "ConfigReply",
    "ConfigSet",
    "Failed",
    "Finished",
    "Goodbye",
    "Heartbeat",
    "Hello",
    "InstanceStatus",
    "Histogram",
    "Message",
    "Pong",
    "Ready",
    "Refuse",
    "Results",
    "RunSettings",
    "StatusReply",
    "StatusRequest",
    "StreamStatus",
    "Sync",
    "Tap",
    "TapReply",
    "Ticks",
    "VertexStatus",
    "Welcome",
    "WorkerStats",
    "decode",
    "decode_header",
    "encode",
    "encode_results",
    "encode_ticks",
    "losses",
    "split_values",
]
