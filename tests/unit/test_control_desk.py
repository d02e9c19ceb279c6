"""The broker's control desk, frames in and actions out (no socket): a request is answered,
and a message sent to the control socket that belongs elsewhere is refused with a reply
saying so, and counted."""

from pathlib import Path

import msgpack
import zmq

from backend_stub.control import ControlDesk
from backend_stub.model import Reply
from backend_stub.scheduler import Scheduler
from pipelogic import protocol as P
from pipelogic.pipeline import parse_pipeline


def desk() -> tuple[ControlDesk, Scheduler]:
    p = parse_pipeline(
        {
            "name": "p",
            "components": {"n": {"source": "sequence", "count": 3}, "out": {"sink": "null"}},
            "connections": ["n -> out"],
        },
        Path("/nonexistent/pipeline.yml"),
    )
    sch = Scheduler(p)
    return ControlDesk(sch, None, {}, "broker-1", sch.status, lambda *a: [], lambda n: None), sch


def ask(d: ControlDesk, frames: list[bytes]) -> list[P.Message]:
    actions = d.handle([zmq.Frame(b"client"), zmq.Frame(b""), *map(zmq.Frame, frames)], 0.0)
    assert all(isinstance(a, Reply) and a.client == b"client" for a in actions)
    return [P.decode(a.frames, P.REPLY)[0] for a in actions if isinstance(a, Reply)]


def test_a_status_request_is_answered():
    d, _ = desk()
    (reply,) = ask(d, P.encode(P.StatusRequest()))
    assert isinstance(reply, P.StatusReply) and [v["name"] for v in reply.vertices] == ["n", "out"]


def test_a_data_message_sent_to_the_control_socket_is_refused_with_a_reply_and_counted():
    d, sch = desk()
    (reply,) = ask(d, P.encode(P.Results(1, [], None)))
    assert isinstance(reply, P.Refuse) and reply.reason == "results is not a control request message"
    assert sch.refusals.counts == {"control": 1}


def test_garbage_is_counted_and_not_answered():
    d, sch = desk()
    assert ask(d, [msgpack.packb([1, "nonsense", {}])]) == []
    assert sch.refusals.counts == {"control": 1}
