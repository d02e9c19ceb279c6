"""What the broker's recovery store writes, and that a restart rebuilds from it exactly
what the broker had: a scheduler driven by a fake worker (no socket), committed to a real
SQLite store, then resumed into a fresh scheduler."""

from pathlib import Path

import msgpack
import pytest

from backend_stub.model import Settings
from backend_stub.store import open_run
from backend_stub.vertices import ComponentVertex
from pipelogic import protocol as P
from pipelogic.pipeline import parse_pipeline
from pipelogic.types import InputsPullOption, InputsPullRequest, StreamPullShift
from tests.fakes import FakeWorker, accept, deliver, vertex

SETTINGS = Settings(credit=8, batch=4, buffer_capacity=16)
WINDOW = InputsPullRequest(InputsPullOption([StreamPullShift.from_fixed(1, 2, 2)])).to_wire()  # skip 1, take 2


def pipeline(tmp_path: Path, component, source: dict):
    comp = component("c", "name: c\nworker: {input_type: Int64, output_type: Int64}\n", "")
    return parse_pipeline(
        {
            "name": "stored",
            "components": {"src": source, "c": {"path": str(comp)}, "out": {"sink": "memory"}},
            "connections": ["src -> c", "c -> out"],
        },
        tmp_path / "pipeline.yml",
    )


def answer(sch, w: FakeWorker, n: int, pull_request=None) -> None:
    """``w`` answers its first ``n`` ticks (each with ``pull_request``, streaming)."""
    done, w.inbox = w.inbox[:n], w.inbox[n:]
    layout = [[tick, [[0]], pull_request] for tick, _ in done]
    frames = [msgpack.packb(v * 2) for _, v in done]
    deliver(sch.on_message(P.Results(w.epoch, layout), frames, 0.0), {w.epoch: w})


def run_and_commit(tmp_path, p, features, pull_request=None, rounds=5):
    """A stateful worker (its ticks retained until two snapshots) runs a few rounds; the
    store commits; the scheduler and store are returned."""
    sch, store = open_run(p, SETTINGS, tmp_path / "state")
    w = FakeWorker(accept(sch, P.Hello("c", "i", 1, [], 1, 1)))
    deliver(sch.on_message(P.Ready(w.epoch, features, pull_request, 0), [], 0.0), {w.epoch: w})
    for _ in range(rounds):
        deliver(sch.pump(0.0), {w.epoch: w})
        answer(sch, w, 2, pull_request)
    deliver(sch.pump(0.0), {w.epoch: w})
    store.commit(sch)
    return sch, store


def picture(sch) -> tuple:
    """What a restarted broker must have again: the log and the input queue of c."""
    c = vertex(sch, "c", ComponentVertex)
    log = [(inf.tick, inf.composition, [tuple(s) for s in inf.starts], inf.extra) for inf in c.log]
    return log, list(c.inputs[0].queue), c.inputs[0].consumed, c.next_tick, c.applied


def rows(store, sql: str) -> list:
    return store.db.execute(sql).fetchall()


@pytest.mark.parametrize("kind", ["sequence", "values", "jsonl", "msgpack"])
def test_a_builtin_sources_messages_and_synchronous_ticks_are_not_written_yet_come_back(tmp_path, component, kind):
    numbers = [7 + 3 * i for i in range(200)]
    (tmp_path / "in.jsonl").write_text("".join(f"{x}\n" for x in numbers))
    (tmp_path / "in.msgpack").write_bytes(b"".join(msgpack.packb(x) for x in numbers))
    source = {
        "sequence": {"source": "sequence", "count": 200, "start": 7, "step": 3},
        "values": {"source": "values", "type": "Int64", "values": numbers},
        "jsonl": {"source": "jsonl", "type": "Int64", "path": "in.jsonl"},
        "msgpack": {"source": "msgpack", "type": "Int64", "path": "in.msgpack"},
    }[kind]
    p = pipeline(tmp_path, component, source)
    sch, store = run_and_commit(tmp_path, p, ["stateful"])
    before = picture(sch)
    assert len(before[0]) > 10 and before[1]  # ticks retained, messages queued
    assert rows(store, "SELECT count(*) FROM value WHERE stream = 'src.0'") == [(0,)]  # made again instead
    # One row for the first retained tick; every other one follows from it.
    assert rows(store, "SELECT tick FROM tick WHERE vertex = 'c'") == [(before[0][0][0],)]
    store.close()

    again, store2 = open_run(p, SETTINGS, tmp_path / "state")
    assert picture(again) == before
    store2.close()


def test_ticks_a_pull_request_shaped_are_written_and_come_back(tmp_path, component):
    p = pipeline(tmp_path, component, {"source": "values", "type": "Int64", "values": list(range(100, 160))})
    sch, store = run_and_commit(tmp_path, p, ["stateful", "streaming"], WINDOW, rounds=6)
    before = picture(sch)
    assert [s for _, _, s, _ in before[0]][:2] == [[(0, 1, 2)], [(3, 1, 2)]]  # windows with a skip
    written = [t for (t,) in rows(store, "SELECT tick FROM tick WHERE vertex = 'c' ORDER BY tick")]
    assert written == [t for t, *_ in before[0]]  # none of them follows from the one before
    store.close()

    again, store2 = open_run(p, SETTINGS, tmp_path / "state")
    assert picture(again) == before
    store2.close()


def test_a_components_messages_in_flight_are_written_until_the_run_finishes(tmp_path, component):
    """The sink's input (c's output) is a component's stream: what is queued for the sink
    at a commit is kept (a memory sink takes them as it pumps, so queue one by hand), and
    dropped when the run is finished."""
    p = pipeline(tmp_path, component, {"source": "sequence", "count": 50})
    sch, store = open_run(p, SETTINGS, tmp_path / "state")
    sch._emit(vertex(sch, "c", ComponentVertex), 0, [(msgpack.packb(41),), (msgpack.packb(42),)])
    store.commit(sch)
    got = rows(store, "SELECT seq, frames FROM value WHERE stream = 'c.0' ORDER BY seq")
    assert [(q, msgpack.unpackb(f)) for q, f in got] == [(0, [msgpack.packb(41)]), (1, [msgpack.packb(42)])]
    store.finish()  # a finished run is never resumed: what was kept for a restart goes
    assert rows(store, "SELECT count(*) FROM value") == [(0,)] and rows(store, "SELECT count(*) FROM tick") == [(0,)]
    assert store.stored().finished
    store.close()
