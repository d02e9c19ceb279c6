"""Every message kind round-trips; malformed frames raise ProtocolError with a reason."""

import subprocess
import sys
from typing import Any, cast

import msgpack
import pytest

from pipelogic import protocol as P
from pipelogic.errors import ProtocolError, ProtocolVersionError
from pipelogic.protocol.messages import _REGISTRY

SAMPLES = [
    P.Hello("v", "i", 1, ["stateful"], 1, 2),
    P.Hello("v", "i", 1, [], 0, 0, {"tick": 3}),
    P.Welcome(1, "tcp://x:1", "tcp://x:2", ["Int64"], ["[Int32]"], {"k": 1}, 0, 1000, {}),
    P.Refuse("no"),
    P.StatusRequest(),
    P.StatusReply("p", "running", cast(Any, [{"name": "a"}]), [], None),  # the codec does not look inside
    P.ConfigSet("v", {"k": "1"}, 100),
    P.ConfigReply(True, 2, True, None),
    P.Ticks(1, [[0, [[0]], None]]),
    P.ConfigPush(2, {"k": 1}),
    P.Close("finished"),
    P.Ready(1, ["streaming"], [[[[0, 1, 1]], None]]),
    P.Results(1, [[0, [[0]], None]]),
    P.Heartbeat(1, {"ticks": 3}),
    P.ConfigApplied(1, 2),
    P.Failed(1, 0, "boom", "tb", True, None),
    P.Finished(1),
    P.Goodbye(1),
    P.Ready(2, ["stateful"], None, 17),
    P.Sync(1, 5),
    P.Applied(1, 5),
    P.Checkpoint(1, 5),
    P.Pong(1, False),
    P.Tap("v", 0, -1, 1000),
    P.TapReply("Int64", 3, [0], 1, 4, False),
]


def test_every_kind_is_sampled():
    assert {type(m) for m in SAMPLES} == set(_REGISTRY.values())


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.KIND)
def test_round_trip(msg):
    payload = [b"\x01"] if msg.HAS_PAYLOAD else []
    got, rest = P.decode(P.encode(msg, payload))
    assert got == msg and rest == payload


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([], "empty message"),
        ([b"\xc1"], "not valid msgpack"),
        ([msgpack.packb([1, "hello"])], "header must be [version, kind, body]"),
        ([msgpack.packb([1, "nope", {}])], "unknown message kind 'nope'"),
        ([msgpack.packb([1, "close", []])], "body must be a map"),
        ([msgpack.packb([1, "close", {}])], "close: missing field 'reason'"),
        ([msgpack.packb([1, "close", {"reason": 3}])], "close.reason: expected str, got int"),
        ([msgpack.packb([1, "close", {"reason": "x", "z": 1}])], "unexpected field(s) z"),
        ([msgpack.packb([1, "goodbye", {"epoch": True}])], "goodbye.epoch: expected int, got bool"),
        ([msgpack.packb([1, "close", {"reason": "x"}]), b"extra"], "unexpected 1 payload frame"),
        ([b"\x00" * (P.MAX_HEADER_BYTES + 1)], "exceeds"),
    ],
)
def test_malformed(frames, message):
    with pytest.raises(ProtocolError) as err:
        P.decode(frames)
    assert message in str(err.value)


def test_version_mismatch_is_refused_clearly():
    with pytest.raises(ProtocolVersionError, match="protocol version 99 is not supported"):
        P.decode([msgpack.packb([99, "close", {"reason": "x"}])])


def test_split_values_checks_the_layout():
    payload = [b"a", b"buf", b"b"]
    out = P.split_values([[0, [[1], [0]], None]], payload, 2)
    assert out == [(0, [[(b"a", b"buf")], [(b"b",)]], None)]
    with pytest.raises(ProtocolError, match="accounts for 2 of 3"):
        P.split_values([[0, [[0], [0]], None]], payload, 2)
    with pytest.raises(ProtocolError, match="needs more frames"):
        P.split_values([[0, [[5], [0]], None]], payload, 2)
    with pytest.raises(ProtocolError, match="expected 2"):
        P.split_values([[0, [[0]], None]], payload, 2)
    with pytest.raises(ProtocolError, match="non-negative"):
        P.split_values([[-1, [[0], [0]], None]], payload, 2)


def test_layers_import_one_way():
    code = (
        "import sys, pipelogic.protocol, pipelogic.types, pipelogic.pipeline, pipelogic.pulling;"
        "assert 'zmq' not in sys.modules, 'protocol/types must not import zmq';"
        "import pipelogic.worker, pipelogic.cli, pipelogic.client;"
        "assert 'backend_stub' not in sys.modules, 'pipelogic must not import backend_stub'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("version", [True, 1.0, "1", None])
def test_a_version_equal_to_one_in_python_is_not_version_one(version):
    header = msgpack.packb([version, "goodbye", {"epoch": 1}])
    with pytest.raises(ProtocolVersionError):
        P.decode([header])


@pytest.mark.parametrize("stats", [None, {"ticks": 3, "virtual_dropped": 1}])
def test_fast_encoders_match_encode(stats):
    """encode_ticks/encode_results spell the Ticks and Results fields out for speed: they
    must stay byte-identical to encode() of the message, payload frames included."""
    layout = [[7, [[0], [1, 0]], None], [8, [[], [0]], [0, 1, 2]]]
    payload = [b"a", b"b", b"c", b"d", b"e"]
    assert P.encode_ticks(5, layout, payload) == P.encode(P.Ticks(5, layout), payload)
    assert P.encode_results(5, layout, stats, payload) == P.encode(P.Results(5, layout, stats), payload)
    assert P.encode_ticks(5, [], []) == P.encode(P.Ticks(5, []))
    msg, frames = P.decode(P.encode_results(5, layout, stats, payload))
    assert msg == P.Results(5, layout, stats) and frames == payload


def test_a_receiver_decodes_with_the_direction_it_expects():
    hello = P.encode(P.Hello("v", "i", 1, [], 1, 1))
    assert isinstance(P.decode(hello, P.REQUEST)[0], P.Hello)
    with pytest.raises(ProtocolError, match="hello is not a worker to broker message"):
        P.decode(hello, P.TO_BROKER)
    beat = P.encode(P.Heartbeat(3, {}))  # both on the control socket and on the data socket
    assert P.decode(beat, P.REQUEST)[0] == P.decode(beat, P.TO_BROKER)[0]
    with pytest.raises(ProtocolError, match="ticks is not a control reply message"):
        P.decode(P.encode_ticks(3, [], []), P.REPLY)
    every = set().union(*P.DIRECTIONS.values())
    assert every == set(_REGISTRY)  # each kind has its direction(s)
