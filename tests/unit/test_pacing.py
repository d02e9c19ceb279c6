"""Pacing by time (backend_stub.pacing), per-vertex flow settings and the camera's queue:
what waits in front of a slow worker. Driven without sockets; time is the ``now`` given."""

import threading

import pytest

from backend_stub.pacing import PROBE_BYTES, TARGET_S, Pace
from backend_stub.scheduler import Scheduler, Settings
from pipelogic import protocol as P
from pipelogic.errors import DefinitionError
from pipelogic.pipeline import parse_pipeline
from pipelogic.worker._virtual import VirtualInputStream
from tests.fakes import FakeWorker, accept, deliver, sink_values


def test_a_worker_is_timed_only_while_it_has_work():
    p = Pace()
    p.results(4, 0, 1.0)  # no interval yet, and nothing left out: idle from here
    p.results(4, 2, 9.0)  # the 8 s since were idle time, not 4 ticks of work
    assert p.tick_s == 0
    p.results(2, 0, 9.6)  # busy since 9.0: 2 ticks in 0.6 s
    assert p.tick_s == pytest.approx(0.3)
    p.busy_since = 20.0  # ticks went to it while idle (the scheduler notes when)
    p.results(1, 0, 20.3)
    assert p.tick_s == pytest.approx(0.3)


def test_a_fast_worker_keeps_its_counts_and_a_slow_one_gets_one_in_flight_and_one_queued():
    fresh, fast, slow, middling = Pace(), Pace(tick_s=20e-6), Pace(tick_s=0.3), Pace(tick_s=0.01)
    assert fresh.credit(256) == 256 and fresh.queued(1024) == 1024
    assert fresh.bytes(64 << 20) == PROBE_BYTES  # a first burst of frames does not queue
    assert fast.credit(256) == 256 and fast.queued(1024) == 1024 and fast.bytes(64 << 20) == 64 << 20
    assert slow.credit(256) == 1 and slow.queued(1024) == 1
    assert middling.credit(256) == round(TARGET_S / 0.01)  # about TARGET_S of its work waits
    assert slow.credit(256) <= slow.credit(1) == 1


@pytest.fixture
def comp(component):
    return component("c", "name: c\nworker: {input_type: Int64, output_type: Int64}\n", "")


def _pipeline(tmp_path, comp, **own):
    data = {
        "name": "paced",
        "components": {
            "a": {"source": "sequence", "count": 40},
            "c": {"path": str(comp), **own},
            "out": {"sink": "memory"},
        },
        "connections": ["a -> c", "c -> out"],
    }
    return parse_pipeline(data, tmp_path / "pipeline.yml")


def test_a_slow_worker_holds_one_tick_and_one_value_waits_for_it(tmp_path, comp):
    """A 0.3 s model: once timed, the broker sends it one tick at a time and queues one
    value for it, so a new value waits about two ticks, not the buffer's worth."""
    s = Scheduler(_pipeline(tmp_path, comp, credit=16, buffer_capacity=8), Settings())
    c = s.vertices["c"]
    s.pump(0.0)
    assert len(c.inputs[0].queue) == 8  # its own buffer_capacity, not the pipeline's 1024
    epoch = accept(s, P.Hello("c", "i", 1, [], 1, 1))
    w = FakeWorker(epoch)
    deliver(s.on_message(P.Ready(epoch, [], None), [], 0.0), {epoch: w})
    assert len(w.inbox) == 16  # not timed yet: its own credit (the source refills the buffer as ticks form)
    now, later = 0.0, []
    while w.inbox:
        now += 0.3
        tick, x = w.inbox.pop(0)
        deliver(s.on_message(*FakeWorker.results(epoch, [(tick, x * 2)]), now), {epoch: w})
        if tick >= 24:  # what was out and queued before it was timed has drained
            later.append((c.outstanding, len(c.inputs[0].queue)))
    assert later and max(later) == (1, 1)
    assert s.done and sink_values(s) == [2 * i for i in range(40)]
    # The sink's end-to-end latency, sampled (a message marked every 0.1 s at the source):
    # each took at least the model's 0.3 s; those queued early waited for the burst ahead.
    h = s.vertices["out"].latency.status()
    assert 3 <= h["counts"][-1] <= 40 and h["sum"] / h["counts"][-1] >= 0.3
    assert s.vertices["c"].pace.times.status()["counts"][-1] >= 30  # its ticks, timed


def test_flow_settings_per_vertex_are_checked_with_their_key(tmp_path, comp):
    with pytest.raises(DefinitionError) as e:
        _pipeline(tmp_path, comp, credit=0, virtual_queue={"keep": "newest", "size": "2"})
    text = str(e.value)
    assert "components.c.credit: expected an integer >= 1, got 0" in text
    assert "components.c.virtual_queue.keep: expected all or latest, got 'newest'" in text
    assert "components.c.virtual_queue.size: expected an integer >= 1, got '2'" in text
    p = _pipeline(tmp_path, comp, credit=2, inflight_bytes=1 << 20, virtual_queue={"keep": "latest"})
    s = Scheduler(p, Settings.from_pipeline(p, credit=64))
    own, other = s.vertices["c"].settings, s.vertices["a"].settings
    assert (own.credit, own.batch, own.inflight_bytes) == (2, 2, 1 << 20)  # batch at most the credit
    assert (other.credit, other.inflight_bytes) == (64, Settings().inflight_bytes)


def test_keep_latest_drops_the_oldest_and_never_waits():
    q = VirtualInputStream(maxsize=2)
    q.configure(keep="latest")
    q.push(1, 2, 3, 4)  # would block with keep all
    assert q.take(0, 10) == [3, 4] and q.dropped == 2
    with pytest.raises(ValueError, match="keep must be all or latest"):
        q.configure(keep="newest")


def test_before_run_a_queue_holds_one_large_message_and_many_small_ones():
    q = VirtualInputStream()
    q.push(*range(500), blocking=False)  # a sensor started before run(): small, all kept
    assert len(q) == 500 and q.dropped == 0
    q.take(0, 500)
    q.push(bytes(2 << 20), bytes(2 << 20), blocking=False)  # frames: the first, not a backlog
    assert len(q) == 1 and q.dropped == 1


def test_a_cameras_queue_holds_about_the_pipelines_pace():
    q = VirtualInputStream(maxsize=1024)
    q.paced = True
    q.push(*range(10))  # small messages, not timed yet: the count bound
    assert len(q) == 10
    q.take(0, 10)
    q._last_take -= 0.3  # the pipeline took one message every 0.3 s
    q.push(0)
    q.take(0, 1)
    assert q.bound() == 1
    q.push("newest")
    pushed = threading.Event()
    t = threading.Thread(target=lambda: (q.push("waits"), pushed.set()))
    t.start()
    assert not pushed.wait(0.2)  # a blocking camera waits for the model instead of queueing
    assert q.take(0, 1) == ["newest"]
    t.join(5)
    assert pushed.is_set() and q.take(0, 1) == ["waits"]
