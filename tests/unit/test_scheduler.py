"""The broker's scheduling logic, driven without sockets."""

import msgpack
import pytest

from backend_stub.scheduler import Scheduler, Settings
from pipelogic import protocol as P
from pipelogic.errors import ProtocolError
from pipelogic.pipeline import parse_pipeline


@pytest.fixture
def comp(component):
    return component(
        "c",
        """
        name: c
        worker: {input_types: [Int64, Int64], output_type: Int64}
    """,
        "",
    )


def pipeline(tmp_path, comp, count=10):
    data = {
        "name": "t",
        "components": {
            "a": {"source": "sequence", "count": count},
            "b": {"source": "sequence", "count": count, "start": 100},
            "c": {"path": str(comp)},
            "out": {"sink": "memory"},
        },
        "connections": ["a -> c.0", "b -> c.1", "c -> out"],
    }
    return parse_pipeline(data, tmp_path / "pipeline.yml")


def connect(s, name="c", n_in=2, n_out=1, features=()):
    epoch, _ = s.hello(P.Hello(name, "i", 1, [], n_in, n_out), 0.0)
    return epoch, s.on_message(P.Ready(epoch, list(features), None), [], 0.0)


def ticks_of(actions, streams=2):
    out = []
    for a in actions:
        msg, payload = P.decode(a.frames)
        if isinstance(msg, P.Ticks):
            out.extend(P.split_values(msg.layout, payload, streams))
    return out


def answer(s, epoch, ticks, fn=lambda a, b: a + b):
    layout, frames = [], []
    for tick, per_input, _ in ticks:
        a, b = (msgpack.unpackb(v[0][0]) for v in per_input)
        layout.append([tick, [[0]], None])
        frames.append(msgpack.packb(fn(a, b)))
    return s.on_message(P.Results(epoch, layout), frames, 0.0)


def test_zip_rule_and_end_of_stream(tmp_path, comp):
    s = Scheduler(pipeline(tmp_path, comp), Settings(credit=4, batch=2))
    epoch, actions = connect(s)
    sent = ticks_of(actions)
    assert [t for t, _, _ in sent] == [0, 1, 2, 3]  # credit 4
    assert len(actions) == 1  # ready in the same turn: one message, whatever batch says
    while sent:
        sent = ticks_of(answer(s, epoch, sent))
    assert s.done
    assert s.vertices["out"].sink.values == [i + 100 + i for i in range(10)]
    # the worker was told to close
    assert s.vertices["c"].finished


@pytest.mark.parametrize(("batch", "sizes"), [(1, [64, 64, 64, 8]), (64, [64, 64, 64, 8]), (100, [100, 100])])
def test_ticks_ready_together_share_messages_of_up_to_64_or_batch(tmp_path, comp, batch, sizes):
    """Coalescing: the 200 ticks a fresh worker's credit allows go out in messages of 64
    (COALESCE) whatever a smaller batch says; a larger batch raises the size. Each tick
    once, in order."""
    s = Scheduler(pipeline(tmp_path, comp, count=1000), Settings(credit=200, batch=batch))
    _, actions = connect(s)
    assert [len(ticks_of([a])) for a in actions] == sizes
    assert [t for t, _, _ in ticks_of(actions)] == list(range(200))


def test_backpressure_bounds_buffers(tmp_path, comp):
    s = Scheduler(pipeline(tmp_path, comp, count=10_000), Settings(buffer_capacity=50, credit=8, batch=8))
    for _ in range(20):
        s.pump(0.0)
    assert all(len(b.queue) <= 50 for b in s.vertices["c"].inputs)
    assert s.vertices["a"].ticks == 50


def test_new_incarnation_fences_the_old_and_redelivers(tmp_path, comp):
    s = Scheduler(pipeline(tmp_path, comp, count=3), Settings(credit=8))
    old, actions = connect(s)
    sent = ticks_of(actions)
    assert len(sent) == 3
    new, actions = connect(s)  # the worker restarted before answering
    assert s.vertices["c"].restarts == 1
    assert answer(s, old, sent) == [] and s.rejected == 1  # zombie results refused
    resent = ticks_of(actions)
    assert [t for t, _, _ in resent] == [0, 1, 2]  # the same ticks, composed the same
    assert [v for _, v, _ in resent] == [v for _, v, _ in sent]
    answer(s, new, resent)
    assert s.vertices["out"].sink.values == [100, 102, 104]


def test_unknown_vertex_is_refused(tmp_path, comp):
    s = Scheduler(pipeline(tmp_path, comp))
    r = s.hello(P.Hello("nope", "i", 1, [], 2, 1), 0.0)
    assert isinstance(r, P.Refuse) and "unknown vertex 'nope'" in r.reason
    r = s.hello(P.Hello("c", "i", 1, [], 1, 1), 0.0)
    assert isinstance(r, P.Refuse) and "declares 1 input(s)" in r.reason


def test_results_out_of_order_are_protocol_errors(tmp_path, comp):
    s = Scheduler(pipeline(tmp_path, comp), Settings(credit=2))
    epoch, _ = connect(s)
    with pytest.raises(ProtocolError, match="expected 0"):
        s.on_message(P.Results(epoch, [[1, [[0]], None]]), [msgpack.packb(1)], 0.0)


def test_results_before_a_bad_entry_are_applied_and_delivered(tmp_path, comp):
    """A Results message applies its entries in order and emits their values once per
    message: an entry that breaks the protocol still leaves the good ones before it
    applied and delivered, none lost and none applied twice."""
    s = Scheduler(pipeline(tmp_path, comp, count=4), Settings(credit=4, batch=4))
    epoch, actions = connect(s)
    sent = ticks_of(actions)
    assert [t for t, _, _ in sent] == [0, 1, 2, 3]
    layout = [[0, [[0]], None], [1, [[0]], None], [3, [[0]], None]]  # tick 2 skipped
    with pytest.raises(ProtocolError, match="result for tick 3, expected 2"):
        s.on_message(P.Results(epoch, layout), [msgpack.packb(v) for v in (10, 11, 13)], 0.0)
    c = s.vertices["c"]
    assert (c.applied, c.expect, c.out_counts[0]) == (2, 2, 2)
    assert [msgpack.unpackb(v[0]) for v in s.vertices["out"].inputs[0].queue] == [10, 11]
    answer(s, epoch, sent[2:])  # the rest, answered properly
    assert s.vertices["out"].sink.values == [10, 11, 2 + 102, 3 + 103]


def test_config_set_validates_against_schema(tmp_path, component):
    cdir = component(
        "k",
        """
        name: k
        worker:
          input_type: Int64
          output_type: Int64
          config_schema: {factor: {type: Int64, default: 2}}
    """,
        "",
    )
    p = parse_pipeline(
        {
            "name": "t",
            "components": {"a": {"source": "sequence", "count": 1}, "k": {"path": str(cdir)}, "o": {"sink": "null"}},
            "connections": ["a -> k", "k -> o"],
        },
        tmp_path / "p.yml",
    )
    s = Scheduler(p)
    [reply] = s.config_set(P.ConfigSet("k", {"factor": '"x"'}), b"c", 0.0)
    msg, _ = P.decode(reply.frames)
    assert not msg.ok and "declared type Int64" in msg.error
    [reply] = s.config_set(P.ConfigSet("k", {"nope": "1"}), b"c", 0.0)
    assert "not in config_schema" in P.decode(reply.frames)[0].error
    [reply] = s.config_set(P.ConfigSet("k", {"factor": "5"}), b"c", 0.0)
    assert P.decode(reply.frames)[0].ok and s.vertices["k"].v.config["factor"] == 5


def test_a_second_live_instance_from_another_host_is_refused_a_restart_is_not(tmp_path, comp):
    s = Scheduler(pipeline(tmp_path, comp))
    first, _ = s.hello(P.Hello("c", "i1", 1, [], 2, 1, host="container-a"), 0.0)
    other = s.hello(P.Hello("c", "i2", 1, [], 2, 1, host="container-b"), 1.0)
    assert isinstance(other, P.Refuse)
    assert "already served by a live worker (pid 1 on host container-a)" in other.reason
    assert "scale it to 1" in other.reason
    assert s.vertices["c"].epoch == first  # the live one is not fenced
    restart = s.hello(P.Hello("c", "i3", 1, [], 2, 1, host="container-a"), 2.0)  # same container
    assert not isinstance(restart, P.Refuse) and restart[0] != first
    assert s.vertices["c"].epoch == restart[0]
    # The first host, once silent past the liveness bound, is replaced from anywhere.
    later = s.hello(P.Hello("c", "i4", 1, [], 2, 1, host="container-b"), 2.0 + 60)
    assert not isinstance(later, P.Refuse)


def test_buffers_and_inflight_ticks_are_bounded_in_bytes(tmp_path, component):
    """A producer of large values feeding a consumer that never answers: the consumer's
    buffer stays within buffer_bytes (plus what the producer's in-flight ticks add), and
    what is in flight to the consumer within inflight_bytes (plus one tick)."""
    big = component("big", "name: big\nworker: {input_type: Int64, output_type: Bytes}\n", "")
    eat = component("eat", "name: eat\nworker: {input_type: Bytes, output_type: Int64}\n", "")
    p = parse_pipeline(
        {
            "name": "t",
            "components": {
                "n": {"source": "sequence", "count": 10_000},
                "b": {"path": str(big)},
                "e": {"path": str(eat)},
                "o": {"sink": "memory"},
            },
            "connections": ["n -> b", "b -> e", "e -> o"],
        },
        tmp_path / "pipeline.yml",
    )
    mb = 1 << 20
    s = Scheduler(p, Settings(credit=16, batch=1, buffer_bytes=8 * mb, inflight_bytes=4 * mb))
    eb, _ = s.hello(P.Hello("b", "i", 1, [], 1, 1), 0.0)
    ee, _ = s.hello(P.Hello("e", "i", 1, [], 1, 1), 0.0)
    s.on_message(P.Ready(ee, [], None), [], 0.0)
    # e was timed as fast and then stalled (one never timed gets 1 MiB: backend_stub.pacing).
    s.vertices["e"].pace.tick_s = 1e-6
    pending = ticks_of(s.on_message(P.Ready(eb, [], None), [], 0.0), 1)
    assert len(pending) == 1  # Bytes of unknown size: the first result tells what they weigh
    value = msgpack.packb(b"\0" * 100_000) + b"\0" * (mb - 100_000)  # about 1 MB per value
    peak_buffer = peak_inflight = 0
    for _ in range(200):
        if not pending:
            break
        layout = [[t, [[0]], None] for t, _, _ in pending]
        actions = s.on_message(P.Results(eb, layout), [value] * len(pending), 0.0)
        pending = ticks_of([a for a in actions if a.epoch == eb], 1)
        e = s.vertices["e"]
        peak_buffer = max(peak_buffer, e.inputs[0].nbytes)
        peak_inflight = max(peak_inflight, e.inflight_bytes)
    e = s.vertices["e"]
    assert e.outstanding >= 1 and e.inflight_bytes <= 4 * mb + len(value)
    assert peak_inflight <= 4 * mb + len(value)
    assert 7 * mb <= peak_buffer <= 8 * mb + 16 * len(value)  # filled, never past the bound + b's credit
    assert s.vertices["b"].outstanding == 0  # b waits for room, rather than growing e's buffer


def test_a_stateful_vertex_is_finished_only_once_its_worker_confirmed_its_final_state(tmp_path, comp):
    """Issue 25, item 4: a stateful vertex showed `finished` while its final snapshot
    failed; it is `finishing` until the worker's Goodbye (sent once the state is written)."""
    s = Scheduler(pipeline(tmp_path, comp, count=2), Settings(credit=4, batch=2))
    epoch, actions = connect(s, features=("stateful",))
    answer(s, epoch, ticks_of(actions))
    state = {v["name"]: v["state"] for v in s.status().vertices}
    assert state["c"] == "finishing" and s.vertices["c"].finished and not s.done
    s.on_message(P.Goodbye(epoch), [], 0.0)
    assert {v["name"]: v["state"] for v in s.status().vertices}["c"] == "finished"
