"""A replicated vertex (``replicas: N``) driven without sockets: ticks spread over the
instances, results applied in tick order and once, instances that die, restart, join late
and send stale results; plus what is refused and what status shows.

The model test lets Hypothesis drive the real Scheduler through random interleavings of
instances connecting, answering some of their ticks, dying, restarting under the same
instance id and zombies sending results. After every step the sink holds a prefix of the
reference (x * 3 for x = 0..M-1: no loss, no duplicate, in order) and no instance has more
than its credit in flight; at the end everything drains to exactly the reference.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from backend_stub.scheduler import Scheduler, Settings
from backend_stub.vertices import ReplicatedVertex
from pipelogic import protocol as P
from pipelogic.errors import DefinitionError, ProtocolError
from pipelogic.pipeline import Pipeline, apply_scale, parse_pipeline, parse_scale
from tests.fakes import FakeWorker, accept, deliver, sink_values, vertex
from tests.unit.schedlib import sent_ticks

M = 50
REFERENCE = [3 * x for x in range(M)]
CREDIT = 3


def make_pipeline(tmp: Path, comp: Path, replicas: int = 3, count: int = M):
    return parse_pipeline(
        {
            "name": "replicas",
            "components": {
                "src": {"source": "sequence", "count": count},
                "c": {"path": str(comp), "replicas": replicas},
                "out": {"sink": "memory"},
            },
            "connections": ["src -> c", "c -> out"],
        },
        tmp / "pipeline.yml",
    )


@pytest.fixture
def comp(component):
    return component("c", "name: c\nworker: {input_type: Int64, output_type: Int64}\n", "")


class ReplicaModel(RuleBasedStateMachine):
    pipeline: Pipeline | None = None  # set by the test

    def __init__(self) -> None:
        super().__init__()
        assert self.pipeline is not None
        self.s = Scheduler(self.pipeline, Settings(credit=CREDIT, batch=2, buffer_capacity=6))
        self.live: dict[int, FakeWorker] = {}
        self.dead: list[FakeWorker] = []
        self.names = 0
        self.s.pump(0.0)

    def deliver(self, actions) -> None:
        deliver(actions, self.live)

    def send(self, msg, payload=()) -> None:
        self.deliver(self.s.on_message(msg, list(payload), 0.0))

    def connect(self, name: str) -> None:
        replaced = [e for e, i in self.live.items() if i.name == name]
        epoch = accept(self.s, P.Hello("c", name, 1, [], 1, 1))
        for e in replaced:  # the same instance id: a restart; the old epoch is fenced
            self.dead.append(self.live.pop(e))
        self.live[epoch] = FakeWorker(epoch, name)
        self.send(P.Ready(epoch, [], None))
        assert self.s.failed is None, self.s.failed

    @precondition(lambda self: len(self.live) < 4)
    @rule()
    def join(self) -> None:
        self.names += 1
        self.connect(f"i{self.names}")

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def restart(self, data) -> None:
        self.connect(data.draw(st.sampled_from(sorted(i.name for i in self.live.values()))))

    @precondition(lambda self: any(i.inbox for i in self.live.values()))
    @rule(data=st.data(), n=st.integers(1, 4))
    def answer(self, data, n: int) -> None:
        inst = data.draw(st.sampled_from([i for i in self.live.values() if i.inbox]))
        answers = [(tick, 3 * x) for tick, x in inst.inbox[:n]]
        del inst.inbox[:n]
        self.send(*FakeWorker.results(inst.epoch, answers))

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def die(self, data) -> None:
        epoch = data.draw(st.sampled_from(sorted(self.live)))
        self.dead.append(self.live.pop(epoch))
        self.deliver(self.s.disconnect(epoch))

    @precondition(lambda self: any(i.inbox for i in self.dead))
    @rule()
    def zombie_sends(self) -> None:
        z = next(i for i in self.dead if i.inbox)
        before = list(sink_values(self.s))
        tick, x = z.inbox.pop(0)
        self.s.on_message(P.Results(z.epoch, [[tick, [[0]], None]]), [msgpack.packb(3 * x)], 0.0)
        assert sink_values(self.s) == before

    @rule()
    def pump(self) -> None:
        self.deliver(self.s.pump(0.0))

    @invariant()
    def sink_is_a_prefix_of_the_reference(self) -> None:
        got = sink_values(self.s)
        assert got == REFERENCE[: len(got)], got

    @invariant()
    def each_instance_within_its_credit(self) -> None:
        vs = vertex(self.s, "c", ReplicatedVertex)
        for i in vs.instances.values():
            assert len(i.assigned) <= CREDIT
        assert vs.next_tick - vs.applied <= 6  # buffer_capacity: the consumer's room counts unapplied ticks

    def teardown(self) -> None:
        for _ in range(20 * M):
            if self.s.done:
                break
            if not self.live:
                self.join()
            for inst in list(self.live.values()):
                if inst.inbox:
                    self.answer_all(inst)
                elif inst.closed:
                    self.send(P.Goodbye(inst.epoch))
                    self.live.pop(inst.epoch)
            self.pump()
        assert self.s.done, self.s.status()
        assert sink_values(self.s) == REFERENCE
        assert vertex(self.s, "c", ReplicatedVertex).duplicates == 0

    def answer_all(self, inst: FakeWorker) -> None:
        answers = [(tick, 3 * x) for tick, x in inst.inbox]
        inst.inbox.clear()
        self.send(*FakeWorker.results(inst.epoch, answers))


def test_results_apply_in_tick_order_exactly_once_whatever_the_instances_do(tmp_path, comp):
    ReplicaModel.pipeline = make_pipeline(tmp_path, comp)
    run_state_machine_as_test(
        ReplicaModel,
        settings=settings(
            max_examples=int(os.environ.get("PIPELOGIC_MODEL_EXAMPLES", "150")),
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def ticks_to(actions, epoch):
    return [t for t, _, _ in sent_ticks(actions, epoch)]


def test_ticks_spread_over_instances_each_within_its_credit(tmp_path, comp):
    s = Scheduler(make_pipeline(tmp_path, comp, count=100), Settings(credit=4, batch=2))
    s.pump(0.0)
    epochs = []
    for name in ("a", "b", "c"):
        e, _ = s.hello(P.Hello("c", name, 1, [], 1, 1), 0.0)
        epochs.append(e)
    actions = []
    for e in epochs:
        actions += s.on_message(P.Ready(e, [], None), [], 0.0)
    got = {e: ticks_to(actions, e) for e in epochs}
    assert sorted(t for ts in got.values() for t in ts) == list(range(12))  # 3 x credit, each tick once
    assert all(len(ts) == 4 for ts in got.values())
    st = s.status().vertices[1]
    assert st["state"] == "running" and st["inflight"] == 12
    assert [i["instance"] for i in st["instances"]] == ["a", "b", "c"]
    assert all(i["inflight"] == 4 for i in st["instances"])
    # A stopped instance holds up the others only by its own credit: b and c go on while a
    # holds ticks 0..; the results of b's and c's ticks wait for a's, in order.
    b, c = epochs[1], epochs[2]
    for e in (b, c):
        ts = got[e]
        more = s.on_message(P.Results(e, [[t, [[0]], None] for t in ts]), [msgpack.packb(t) for t in ts], 0.0)
        assert ticks_to(more, e)  # new ticks for it
    assert sink_values(s) == []  # tick 0 is a's, still owed
    vs = s.vertices["c"]
    while True:  # b and c keep going until they are a credit each ahead of a
        more = []
        for e in (b, c):
            ts = list(vs.instances[e].assigned)
            if ts:
                more += s.on_message(P.Results(e, [[t, [[0]], None] for t in ts]), [msgpack.packb(t) for t in ts], 0.0)
        if not more:
            break
    assert vs.next_tick - vs.applied == 2 * 4 * 3 and sink_values(s) == []
    assert len(vs.done) == 2 * 4 * 3 - 4 and len(vs.instances[epochs[0]].assigned) == 4
    # a answers: everything held goes out, in order.
    ts = list(vs.instances[epochs[0]].assigned)
    s.on_message(P.Results(epochs[0], [[t, [[0]], None] for t in ts]), [msgpack.packb(t) for t in ts], 0.0)
    assert sink_values(s) == list(range(24))


def test_an_instance_answering_out_of_its_order_is_a_protocol_error(tmp_path, comp):
    s = Scheduler(make_pipeline(tmp_path, comp), Settings(credit=4, batch=4))
    s.pump(0.0)
    e, _ = s.hello(P.Hello("c", "a", 1, [], 1, 1), 0.0)
    ts = ticks_to(s.on_message(P.Ready(e, [], None), [], 0.0), e)
    with pytest.raises(
        ProtocolError, match=rf"instance a \(epoch {e}\) sent a result for tick {ts[1]}; it owes tick {ts[0]}"
    ):
        s.on_message(P.Results(e, [[ts[1], [[0]], None]]), [msgpack.packb(1)], 0.0)


@pytest.mark.parametrize(
    "features, why",
    [
        (["stateful"], "stateful (one state"),
        (["streaming"], "streaming (each pull request"),
        (["virtual_output"], "virtual (its virtual messages"),
    ],
)
def test_a_replicated_vertex_must_be_stateless_and_synchronous(tmp_path, comp, features, why):
    s = Scheduler(make_pipeline(tmp_path, comp))
    e, _ = s.hello(P.Hello("c", "a", 1, [], 1, 1), 0.0)
    s.on_message(P.Ready(e, features, [[1]] if "streaming" in features else None), [], 0.0)
    assert s.failed is not None
    assert "vertex c: replicas: 3 needs a stateless component in synchronous mode" in s.failed
    assert why in s.failed and "run it as one instance (replicas: 1)" in s.failed


def test_a_second_instance_of_an_unreplicated_vertex_is_refused_with_the_way_to_replicate(tmp_path, comp):
    s = Scheduler(make_pipeline(tmp_path, comp, replicas=1))
    s.hello(P.Hello("c", "a", 1, [], 1, 1, host="h1"), 0.0)
    refused = s.hello(P.Hello("c", "b", 2, [], 1, 1, host="h2"), 0.5)
    assert isinstance(refused, P.Refuse)
    assert "declare `replicas: N` on it in pipeline.yml (or `pipelogic up --scale c=N`)" in refused.reason


def test_replicas_and_scale_are_checked(tmp_path, comp):
    with pytest.raises(DefinitionError, match=r"replicas.*expected an integer >= 1 \(worker instances\), got 0"):
        make_pipeline(tmp_path, comp, replicas=0)
    p = make_pipeline(tmp_path, comp, replicas=1)
    apply_scale(p, parse_scale(["c=4"]))
    assert p.vertices["c"].replicas == 4
    with pytest.raises(
        DefinitionError, match=r"--scale out=2: 'out' is not a component vertex .* \(its components: c\)"
    ):
        apply_scale(p, {"out": 2})
    with pytest.raises(ValueError, match=r"expected VERTEX=N with N >= 1, got 'c=0'"):
        parse_scale(["c=0"])


def test_config_update_is_answered_once_every_instance_applied_it(tmp_path, component):
    comp = component(
        "c",
        """
        name: c
        worker:
          input_type: Int64
          output_type: Int64
          config_schema: {k: {type: Int64, default: 1}}
    """,
        "",
    )
    s = Scheduler(make_pipeline(tmp_path, comp))
    es = []
    for name in ("a", "b"):
        e, _ = s.hello(P.Hello("c", name, 1, [], 1, 1), 0.0)
        s.on_message(P.Ready(e, [], None), [], 0.0)
        es.append(e)
    pushed = s.config_set(P.ConfigSet("c", {"k": "5"}, 5000), "client", 0.0)
    assert sorted(a.epoch for a in pushed if a.kind == "send") == es
    assert s.on_message(P.ConfigApplied(es[0], 1), [], 0.0) == []  # b has not applied it yet
    replies = s.on_message(P.ConfigApplied(es[1], 1), [], 0.0)
    assert [a.kind for a in replies] == ["reply"]


def test_a_skipped_tick_of_one_instance_keeps_the_order(tmp_path, comp):
    p = make_pipeline(tmp_path, comp, count=6)
    p.vertices["c"].on_error = "skip"
    s = Scheduler(p, Settings(credit=2, batch=2))
    s.pump(0.0)
    es = []
    sent = {}
    for name in ("a", "b"):
        e, _ = s.hello(P.Hello("c", name, 1, [], 1, 1), 0.0)
        es.append(e)
    for e in es:
        for a in s.on_message(P.Ready(e, [], None), [], 0.0):
            sent.setdefault(a.epoch, []).extend(ticks_to([a], a.epoch))
    a, b = es
    bad = sent[a][0]
    # a fails its first tick (skip: Failed, then an empty result), b answers its own first.
    s.on_message(P.Results(b, [[t, [[0]], None] for t in sent[b]]), [msgpack.packb(t) for t in sent[b]], 0.0)
    assert s.on_message(P.Failed(a, bad, "boom", "", False), [], 0.0) == []
    s.on_message(
        P.Results(a, [[bad, [[]], None]] + [[t, [[0]], None] for t in sent[a][1:]]),
        [msgpack.packb(t) for t in sent[a][1:]],
        0.0,
    )
    vs = s.vertices["c"]
    assert vs.dead_lettered == 1 and vs.errors == 1
    assert sink_values(s) == [t for t in range(4) if t != bad]
    with pytest.raises(ProtocolError, match="not in flight"):
        s.on_message(P.Failed(a, 99, "forged", "", False), [], 0.0)
