"""Model-based test of the broker's retention, replay and dedup.

Hypothesis drives the real Scheduler (no sockets) through random interleavings of: a
stateful worker taking and answering ticks, snapshotting (Sync -> Applied -> durable ->
Checkpoint), crashing at any moment, restarting from its newest or (as if the newest were
corrupt) its previous snapshot, and a fenced incarnation sending stale results. After every
step: the sink holds a prefix of the reference outputs (no loss, no duplicate, in order),
outstanding ticks stay within credit, and the broker retains every tick a restart could
need. At the end everything drains to exactly the reference.
"""

from __future__ import annotations

import os

import msgpack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from backend_stub.scheduler import Scheduler, Settings
from backend_stub.vertices import WorkerVertex
from pipelogic import protocol as P
from pipelogic.pipeline import Pipeline, parse_pipeline
from tests.fakes import FakeWorker, accept, deliver, sink_values, vertex

M = 40
REFERENCE = [sum(range(i + 1)) for i in range(M)]


def make_pipeline(tmp: str, comp: str):
    return parse_pipeline(
        {
            "name": "model",
            "components": {"src": {"source": "sequence", "count": M}, "c": {"path": comp}, "out": {"sink": "memory"}},
            "connections": ["src -> c", "c -> out"],
        },
        __import__("pathlib").Path(tmp) / "pipeline.yml",
    )


class Worker(FakeWorker):
    """A stateful counter's worker: its state and the tick it reaches."""

    def __init__(self, epoch: int, tick: int, state: int) -> None:
        super().__init__(epoch)
        self.next_tick = tick
        self.state = state


class BrokerModel(RuleBasedStateMachine):
    pipeline: Pipeline | None = None  # set by the test (parsing needs a component directory)

    def __init__(self) -> None:
        super().__init__()
        assert self.pipeline is not None
        self.s = Scheduler(self.pipeline, Settings(credit=4, batch=3, buffer_capacity=8))
        self.w: Worker | None = None
        self.store: list[tuple[int, int]] = []  # committed snapshots (tick, state), newest last
        self.dead: list[Worker] = []
        self.s.pump(0.0)

    # -- plumbing --------------------------------------------------------------------------

    def deliver(self, actions) -> None:
        deliver(actions, {self.w.epoch: self.w} if self.w is not None else {})

    def send(self, msg, payload=()) -> None:
        self.deliver(self.s.on_message(msg, list(payload), 0.0))

    # -- rules -----------------------------------------------------------------------------

    @precondition(lambda self: self.w is None)
    @rule(fallback=st.booleans())
    def start(self, fallback: bool) -> None:
        if fallback and len(self.store) > 1:
            self.store = self.store[:-1]  # the newest is corrupt: the loader sets it aside
        tick, state = self.store[-1] if self.store else (0, 0)
        epoch = accept(self.s, P.Hello("c", "i", 1, [], 1, 1))
        self.w = Worker(epoch, tick, state)
        self.send(P.Ready(epoch, ["stateful"], None, tick))
        assert self.s.failed is None, self.s.failed

    @precondition(lambda self: self.w is not None and self.w.inbox)
    @rule(n=st.integers(1, 5))
    def process(self, n: int) -> None:
        w = self.w
        assert w is not None
        answers = []
        for tick, x in w.inbox[:n]:
            assert tick == w.next_tick, f"tick {tick} delivered, the state is at {w.next_tick}"
            w.state += x
            w.next_tick += 1
            answers.append((tick, w.state))
        del w.inbox[:n]
        self.send(*FakeWorker.results(w.epoch, answers))

    @precondition(lambda self: self.w is not None)
    @rule()
    def snapshot(self) -> None:
        w = self.w
        assert w is not None
        self.send(P.Sync(w.epoch, w.next_tick))
        assert w.applied_upto >= w.next_tick, "the broker did not confirm applied results"
        self.store = ([*self.store, (w.next_tick, w.state)])[-2:]
        self.send(P.Checkpoint(w.epoch, w.next_tick))

    @precondition(lambda self: self.w is not None)
    @rule()
    def crash(self) -> None:
        assert self.w is not None
        self.dead.append(self.w)
        self.deliver(self.s.disconnect(self.w.epoch))
        self.w = None

    @precondition(lambda self: self.dead)
    @rule()
    def zombie_sends(self) -> None:
        z = self.dead[-1]
        before = list(sink_values(self.s))
        rejected = self.s.rejected
        self.s.on_message(P.Results(z.epoch, [[z.next_tick, [[0]], None]]), [msgpack.packb(-1)], 0.0)
        assert self.s.rejected == rejected + 1
        assert sink_values(self.s) == before

    @rule()
    def pump(self) -> None:
        self.deliver(self.s.pump(0.0))

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def sink_is_a_prefix_of_the_reference(self) -> None:
        got = sink_values(self.s)
        assert got == REFERENCE[: len(got)], got

    @invariant()
    def within_credit(self) -> None:
        assert 0 <= self.s.vertices["c"].outstanding <= 4

    @invariant()
    def retains_what_a_restart_needs(self) -> None:
        vs = vertex(self.s, "c", WorkerVertex)
        oldest = self.store[0][0] if self.store else 0
        assert vs.log_base <= oldest, f"log starts at {vs.log_base}, a restart may need {oldest}"

    def teardown(self) -> None:
        for _ in range(10 * M):
            if self.s.done:
                break
            if self.w is None:
                self.start(False)
            elif self.w.inbox:
                self.process(5)
            elif self.w.closed:
                self.send(P.Goodbye(self.w.epoch))  # after its final snapshot
            self.pump()
        assert self.s.done, self.s.status()
        assert sink_values(self.s) == REFERENCE


def test_retention_replay_and_dedup(tmp_path, component):
    comp = component("c", "name: c\nworker: {input_type: Int64, output_type: Int64}\n", "")
    BrokerModel.pipeline = make_pipeline(str(tmp_path), str(comp))
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        BrokerModel,
        settings=settings(
            max_examples=int(os.environ.get("PIPELOGIC_MODEL_EXAMPLES", "150")),
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
