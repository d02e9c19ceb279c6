"""The pure parts behind `status`, `tap` and error reports: no sockets."""

import sys
from collections import deque
from pathlib import Path
from types import SimpleNamespace

import pytest

from backend_stub.model import Instance
from backend_stub.observe import Observer
from backend_stub.tap import MAX_VALUES, Taps
from backend_stub.vertices import ReplicatedVertex, WorkerVertex
from pipelogic import protocol as P
from pipelogic._tracebacks import user_traceback
from pipelogic._yamlfile import Problems, load_yaml, near, position
from pipelogic.cli._display import status_table
from pipelogic.errors import DefinitionError, WorkerError
from tests.unit.schedlib import sent_ticks


def _vertex(ticks=0, checkpoints=(), finished=False, outputs=1):
    """A one-worker vertex's state, its pipeline vertex reduced to what these views read."""
    v = SimpleNamespace(name="v", outputs=[[]] * outputs, output_types=["Int64"] * outputs)
    return WorkerVertex(
        v, [], [], [0] * outputs, ticks=ticks, finished=finished, checkpoints=deque(checkpoints, maxlen=2)
    )


def _sched(**vertices):
    return SimpleNamespace(vertices=vertices, settings=SimpleNamespace(heartbeat_ms=1000, liveness=5))


def _status(*rows, state="running"):
    return P.StatusReply("p", state, [dict(r) for r in rows], [], None)


def _row(name, state="running", queues=(0,), inflight=0, ticks=0, kind="component", **extra):
    return {
        "name": name,
        "kind": kind,
        "state": state,
        "queues": list(queues),
        "inflight": inflight,
        "ticks": ticks,
        **extra,
    }


def test_rates_come_from_samples_half_a_second_apart_over_five_seconds():
    a = _vertex()
    sch, ob = _sched(a=a), Observer()
    for i in range(30):  # 100 ticks/s for 15 s, sampled every 0.1 s: one sample per 0.5 s kept
        a.ticks = i * 10
        ob.sample(sch.vertices, i * 0.1)
    assert len(ob.samples) <= 12 and ob.rates()["a"] == pytest.approx(100)


def test_a_busy_vertex_that_completes_nothing_past_the_liveness_bound_is_stuck():
    a = _vertex(ticks=5)
    sch, ob = _sched(a=a), Observer()
    ob.sample(sch.vertices, 0.0)
    ob.sample(sch.vertices, 0.5)
    busy = _status(_row("a", queues=(3,), ticks=5))
    assert ob.decorate(busy, 4.0, 5.0).vertices[0]["stuck_s"] == 0  # within 5 s
    assert ob.decorate(busy, 7.0, 5.0).vertices[0]["stuck_s"] == 7.0
    idle = _status(_row("a", queues=(0,), ticks=5))
    assert ob.decorate(idle, 70.0, 5.0).vertices[0]["stuck_s"] == 0  # nothing to do: not stuck
    done = _status(_row("a", queues=(3,), ticks=5), state="failed")
    assert ob.decorate(done, 70.0, 5.0).vertices[0]["stuck_s"] == 0


def test_a_replicated_vertex_is_stuck_only_when_no_instance_progresses_and_blames_the_busy_ones():
    v = SimpleNamespace(name="det", outputs=[[]], output_types=["Int64"])
    det = ReplicatedVertex(v, [], [], [0], ticks=5)
    a, b = Instance(1, "det#0", 101, "h", 0.0), Instance(2, "det#1", 102, "h", 0.0)
    det.instances = {1: a, 2: b}
    sch, ob = _sched(det=det), Observer()

    def row():
        instances = [
            {
                "instance": i.name,
                "epoch": i.epoch,
                "pid": i.pid,
                "host": "h",
                "state": "running",
                "inflight": n,
                "ticks": i.ticks,
            }
            for i, n in ((a, 0), (b, 2))
        ]
        return _status(_row("det", queues=(4,), inflight=2, ticks=det.ticks, instances=instances))

    # b holds the oldest tick; a goes on finishing later ones, whose results wait for b's:
    # the vertex applies nothing, but it is making progress.
    for t in range(0, 20):
        a.ticks = t
        ob.sample(sch.vertices, t * 0.5)
    assert ob.decorate(row(), 10.0, 5.0).vertices[0]["stuck_s"] == 0
    # Now nobody finishes anything: stuck, and only b (with ticks in flight) is to blame.
    for t in range(20, 40):
        ob.sample(sch.vertices, t * 0.5)
    st = ob.decorate(row(), 20.0, 5.0)
    d = st.vertices[0]
    assert d["stuck_s"] > 5 and d["stuck_pids"] == [102]
    d.update(max_queues=[4], restarts=0, errors=0, replicas=2)
    assert "stuck: det has input waiting but completed no tick for 10 s (pid 102;" in status_table(st)


def test_losses_are_gathered_and_a_finished_vertex_shows_its_mean_rate():
    a = _vertex()
    sch, ob = _sched(a=a), Observer()
    for i in range(8):
        a.ticks = i * 50
        ob.sample(sch.vertices, i * 0.5)
    st = _status(_row("a", state="finished", ticks=350, dropped_at_end=2, dead_lettered=3, virtual_dropped=0))
    v = ob.decorate(st, 10.0, 5.0).vertices[0]
    assert v["lost"] == {"dropped_at_end": 2, "dead_lettered": 3}
    assert v["rate"] == pytest.approx(100)


def test_a_finished_vertex_rate_is_exact_where_half_second_samples_misread_a_short_run(tmp_path, component):
    """A 1.5 s run at 100 ticks a second, driven through the real scheduler with the loop's
    clock: the finished rate comes from the turns where the counts first and last moved,
    not from samples half a second apart (which straddle the run's ends and read it low)."""
    import msgpack

    from backend_stub.scheduler import Scheduler, Settings
    from pipelogic.pipeline import parse_pipeline

    comp = component("c", "name: c\nworker: {input_type: Int64, output_type: Int64}\n", "")
    data = {
        "name": "t",
        "components": {"a": {"source": "sequence", "count": 151}, "c": {"path": str(comp)}, "out": {"sink": "memory"}},
        "connections": ["a -> c", "c -> out"],
    }
    s = Scheduler(parse_pipeline(data, tmp_path / "pipeline.yml"), Settings(credit=1))
    ob = Observer()
    now = 100.0
    ob.sample(s.vertices, now)
    hello = s.hello(P.Hello("c", "i", 1, [], 1, 1), now)
    assert isinstance(hello, tuple), hello
    epoch = hello[0]
    now = 100.45  # the worker is ready between two samples
    out = s.on_message(P.Ready(epoch, [], None), [], now)
    while not s.done:
        [(tick, _, _)] = sent_ticks(out, epoch)  # credit 1: one at a time
        now += 0.01
        out = s.on_message(P.Results(epoch, [[tick, [[0]], None]]), [msgpack.packb(tick)], now) + s.pump(now)
        ob.sample(s.vertices, now)
    assert s.vertices["out"].sink.values == list(range(151))
    for turn in range(1, 11):  # the loop turns on after the end, sampling as it goes
        ob.sample(s.vertices, now + turn * 0.1)
    rows = {v["name"]: v for v in ob.decorate(s.status(), now + 3, 5.0, s.vertices).vertices}
    # 150 ticks after the first, 10 ms apart: 100/s for the worker and the sink
    assert rows["c"]["rate"] == pytest.approx(100, rel=0.01)
    assert rows["out"]["rate"] == pytest.approx(100, rel=0.01)
    # The samples alone: from the one before the start to the one after the end, 0.45 s
    # early and up to 0.5 s late (the figure status showed before)
    sampled = {v["name"]: v for v in ob.decorate(s.status(), now + 3, 5.0).vertices}
    assert sampled["c"]["rate"] < 80


def test_snapshot_age_counts_from_when_a_new_checkpoint_was_seen():
    a = _vertex(checkpoints=[10])
    sch, ob = _sched(a=a), Observer()
    ob.sample(sch.vertices, 1.0)
    a.checkpoints.append(20)
    ob.sample(sch.vertices, 2.0)
    ob.sample(sch.vertices, 3.0)
    assert ob.decorate(_status(_row("a")), 5.5, 5.0).vertices[0]["snapshot_age_s"] == 3.5


def _frames(i):
    return (i.to_bytes(4, "big"),)


def test_a_tap_sees_values_from_its_start_and_a_slow_one_is_told_what_it_missed():
    vs = _vertex()
    sch, taps = _sched(n=vs), Taps()

    def emit(k):
        first = vs.out_counts[0]
        values = [_frames(first + i) for i in range(k)]
        vs.out_counts[0] += k
        taps.offer("n", 0, first, values)

    emit(5)  # before any tap: not kept
    reply, payload = taps.poll(sch.vertices, P.Tap("n", 0, -1, 100), 0.0)
    assert reply.next == 5 and payload == [] and not reply.ended
    emit(3)
    reply, payload = taps.poll(sch.vertices, P.Tap("n", 0, reply.next, 2), 0.1)
    assert (reply.first, reply.next, reply.dropped, payload) == (5, 7, 0, [_frames(5)[0], _frames(6)[0]])
    emit(MAX_VALUES + 10)  # the tap falls behind: the ring keeps the newest MAX_VALUES
    reply, payload = taps.poll(sch.vertices, P.Tap("n", 0, reply.next, 10**6), 0.2)
    assert reply.dropped == 11 and reply.first == 18 and reply.next == vs.out_counts[0]
    assert len(payload) == MAX_VALUES and len(taps.rings[("n", 0)].values) == MAX_VALUES  # trimmed next poll
    vs.finished = True
    reply, _ = taps.poll(sch.vertices, P.Tap("n", 0, reply.next, 10), 0.3)
    assert reply.ended and not taps.rings[("n", 0)].values
    taps.expire(100.0)
    assert not taps.rings


def test_a_tap_for_the_newest_skips_the_older_values_without_counting_them_lost():
    vs = _vertex()
    sch, taps = _sched(n=vs), Taps()

    def emit(k):
        first = vs.out_counts[0]
        taps.offer("n", 0, first, [_frames(first + i) for i in range(k)])
        vs.out_counts[0] += k

    reply, _ = taps.poll(sch.vertices, P.Tap("n", 0, -1, 1, newest=True), 0.0)
    emit(100)
    reply, payload = taps.poll(sch.vertices, P.Tap("n", 0, reply.next, 2, newest=True), 0.1)
    assert (reply.first, reply.next, reply.dropped, payload) == (98, 100, 0, [_frames(98)[0], _frames(99)[0]])
    assert len(taps.rings[("n", 0)].values) == 2  # the skipped ones are let go at once
    reply, payload = taps.poll(sch.vertices, P.Tap("n", 0, reply.next, 2, newest=True), 0.2)
    assert (reply.first, reply.next, payload) == (100, 100, [])  # nothing new: nothing again
    emit(1)
    reply, payload = taps.poll(sch.vertices, P.Tap("n", 0, reply.next, 5, newest=True), 0.3)
    assert (reply.first, reply.next, reply.dropped, payload) == (100, 101, 0, [_frames(100)[0]])


def test_a_tap_on_a_vertex_without_that_stream_is_refused():
    sch, taps = _sched(n=_vertex(), o=_vertex(outputs=0)), Taps()
    assert "unknown vertex 'x'; vertices with outputs: n" in taps.poll(sch.vertices, P.Tap("x", 0, -1, 1), 0)[0].reason
    assert "no output streams on vertex 'o'" in taps.poll(sch.vertices, P.Tap("o", 0, -1, 1), 0)[0].reason
    assert "has 1 output stream(s), no stream 2" in taps.poll(sch.vertices, P.Tap("n", 2, -1, 1), 0)[0].reason


def test_yaml_positions_and_hints(tmp_path):
    f = tmp_path / "x.yml"
    f.write_text("a:\n  bb: [1, {d: 1, c: 2}]\n")
    data = load_yaml(f)
    assert position(data, ["a", "bb"]) == (2, 3) and position(data, ["a", "bb"], value=True) == (2, 7)
    assert position(data, ["a", "bb", 1, "c"]) == (2, 18) and position(data, ["a", "zz"]) == (2, 3)
    p = Problems(f, data)
    p.unknown_keys(data["a"], ["b", "cc"], ["a"], "a thing")
    p.add(["a", "bb", 1, "c"], "bad", value=True)
    assert p.items == [f"{f}:2:3: a.bb: unknown key 'bb'; did you mean 'b'?", f"{f}:2:21: a.bb[1].c: bad"]
    assert near("Conections", ["connections"]) == "; did you mean 'connections'?" and near("zzz", ["a"]) == ""
    f.write_text("a: 1\nb: [\n")
    with pytest.raises(
        DefinitionError, match=r"x\.yml:3:1: not valid YAML: expected the node content, but found '<stream end>'"
    ):
        load_yaml(f)


def test_user_tracebacks_keep_the_users_frames_only(tmp_path):
    user = tmp_path / "main.py"
    user.write_text("def f(x):\n    return 1 / x\n")
    ns: dict = {}
    exec(compile(user.read_text(), str(user), "exec"), ns)
    try:
        try:
            ns["f"](0)
        except ZeroDivisionError as exc:
            raise WorkerError("vertex v: the worker function raised ZeroDivisionError") from exc
    except WorkerError as exc:
        text = user_traceback(exc)
    assert f'File "{user}", line 2, in f' in text and "ZeroDivisionError: division by zero" in text
    assert "The above exception was the direct cause of the following exception:" in text
    assert text.rstrip().endswith("WorkerError: vertex v: the worker function raised ZeroDivisionError")
    here = Path(__file__).name
    assert here in text  # this test is "user code" too; pipelogic's own frames are not
    assert "/pipelogic/" not in text.replace(str(Path(sys.prefix)), "")
