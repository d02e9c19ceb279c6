"""Ticks formed ahead: a fast worker at ``credit: 1`` has its next tick formed while it
works on one, held by the broker and sent when it answers (backend_stub.forming.forms_ahead).
Driven without sockets: the test plays the broker's part, holding each ahead Send until the
tick before it is answered, as TickPorts does."""

import msgpack
import pytest

from backend_stub.forming import AHEAD_S
from backend_stub.scheduler import Scheduler, Settings
from pipelogic import protocol as P
from pipelogic.pipeline import parse_pipeline
from tests.unit.schedlib import sent_ticks


@pytest.fixture
def comp(component):
    return component("c", "name: c\nworker: {input_type: Int64, output_type: Int64}\n", "")


def pipeline(tmp_path, comp, count, credit=1):
    data = {
        "name": "t",
        "components": {
            "a": {"source": "sequence", "count": count},
            "c": {"path": str(comp), "credit": credit},
            "out": {"sink": "memory"},
        },
        "connections": ["a -> c", "c -> out"],
    }
    return parse_pipeline(data, tmp_path / "pipeline.yml")


def ticks(actions, epoch):
    """(tick, value, ahead) of each tick the actions send to ``epoch``."""
    return [(t, msgpack.unpackb(per_input[0][0][0]), send.ahead) for t, per_input, send in sent_ticks(actions, epoch)]


class Worker:
    """The worker's side and the broker's holding of ahead ticks: each tick is answered
    with ``x * 2`` ``tick_s`` after it reached the worker; an ahead tick reaches it only
    once the one before was answered."""

    def __init__(self, s: Scheduler, tick_s: float) -> None:
        self.s = s
        self.tick_s = tick_s
        self.now = 100.0
        hello = s.hello(P.Hello("c", "i", 1, [], 1, 1), self.now)
        assert isinstance(hello, tuple), hello
        self.epoch = hello[0]
        self.queue: list[tuple[int, int]] = []  # ticks the worker has, in order
        self.held: list[tuple[int, int, int]] = []  # ahead ticks the broker holds
        self.most_ahead = 0  # the most ticks sent to the worker and not answered
        self.got: list[int] = []  # the ticks the worker ran, in order
        self.aheads = 0  # ticks formed ahead
        self.take(s.on_message(P.Ready(self.epoch, [], None), [], self.now))

    def take(self, actions) -> None:
        for tick, x, ahead in ticks(actions, self.epoch):
            if ahead >= 0:
                assert ahead == tick
                self.aheads += 1
                self.held.append((tick, x, ahead))
            else:
                self.queue.append((tick, x))
        self.most_ahead = max(self.most_ahead, len(self.queue))

    def answer_one(self) -> None:
        tick, x = self.queue.pop(0)
        self.got.append(tick)
        self.now += self.tick_s
        # The broker sends a held tick when the results before it arrive, before applying them.
        while self.held and self.held[0][0] <= tick + 1:
            t, v, _ = self.held.pop(0)
            self.queue.append((t, v))
        self.most_ahead = max(self.most_ahead, len(self.queue))
        msg = P.Results(self.epoch, [[tick, [[0]], None]])
        self.take(self.s.on_message(msg, [msgpack.packb(x * 2)], self.now))

    def run(self) -> None:
        while self.queue:
            self.answer_one()
        assert not self.held


def test_a_fast_worker_at_credit_1_gets_its_next_tick_formed_ahead_and_one_at_a_time(tmp_path, comp):
    s = Scheduler(pipeline(tmp_path, comp, 200), Settings())
    w = Worker(s, tick_s=AHEAD_S / 10)
    w.run()
    assert s.done
    assert s.vertices["out"].sink.values == [2 * i for i in range(200)]  # each once, in order
    assert w.most_ahead == 1  # the worker never holds more than its credit
    assert w.aheads == 198  # every tick from 2 on: tick 0 times the worker, tick 1 goes with its results
    c = s.vertices["c"]
    assert (c.applied, c.duplicates) == (200, 0)


def test_ticks_after_the_first_results_are_formed_ahead(tmp_path, comp):
    s = Scheduler(pipeline(tmp_path, comp, 10), Settings())
    w = Worker(s, tick_s=AHEAD_S / 10)
    assert w.queue == [(0, 0)] and not w.held  # not timed yet: nothing ahead
    w.answer_one()  # tick 0's results time the worker; tick 1 goes, tick 2 is formed ahead
    assert w.queue == [(1, 1)] and [t for t, _, _ in w.held] == [2]
    c = s.vertices["c"]
    assert c.sent - c.expect == 2  # in the model both are out: tick 2 is in the log for a replay


@pytest.mark.parametrize(("credit", "tick_s"), [(1, AHEAD_S * 5), (2, AHEAD_S / 10)])
def test_a_slow_worker_or_a_larger_credit_gets_nothing_ahead(tmp_path, comp, credit, tick_s):
    """A slow worker keeps its next value queued instead (a newer one may replace it
    upstream, and no second value is taken off its input); with more credit the worker
    already has its next tick."""
    s = Scheduler(pipeline(tmp_path, comp, 50, credit=credit), Settings())
    w = Worker(s, tick_s=tick_s)
    w.run()
    assert w.aheads == 0
    assert w.most_ahead <= credit
    assert s.vertices["out"].sink.values == [2 * i for i in range(50)]


def test_a_tick_held_ahead_is_replayed_to_the_next_incarnation(tmp_path, comp):
    """The worker dies with one tick out and one held: the held one is dropped with its
    port, and both are replayed, in order, to the next incarnation: nothing twice, nothing
    lost."""
    s = Scheduler(pipeline(tmp_path, comp, 30), Settings())
    w = Worker(s, tick_s=AHEAD_S / 10)
    for _ in range(5):
        w.answer_one()
    assert w.queue == [(5, 5)] and [t for t, _, _ in w.held] == [6]
    s.disconnect(w.epoch)
    w2 = Worker(s, tick_s=AHEAD_S / 10)
    assert w2.queue == [(5, 5)] and not w2.held  # the replay first, within the credit
    w2.run()
    assert w2.got == list(range(5, 30))
    assert s.done
    assert s.vertices["out"].sink.values == [2 * i for i in range(30)]
    assert s.vertices["c"].duplicates == 0
