"""The broker's group commit (backend_stub.committer) on a real SQLite store, with no socket:
commits that spill large frames are spaced by what they cost, durable answers still force
one at once, and between commits the journal lets go of messages already released, so it
never holds a window's frames (and their shared-memory slots)."""

from pathlib import Path

import msgpack
import pytest

from backend_stub import committer as committer_module
from backend_stub.committer import DUTY, MAX_GAP_S, Committer
from backend_stub.model import Send, Settings
from backend_stub.spill import SPILL_MIN
from backend_stub.store import open_run
from backend_stub.vertices import ComponentVertex
from pipelogic.pipeline import parse_pipeline
from tests.fakes import vertex

COMMIT_S = 0.025


def pipeline(tmp_path: Path, component):
    comp = component("c", "name: c\nworker: {input_type: Int64, output_type: Bytes}\n", "")
    return parse_pipeline(
        {
            "name": "frames",
            "components": {
                "src": {"source": "sequence", "count": 10},
                "c": {"path": str(comp)},
                "out": {"sink": "null"},
            },
            "connections": ["src -> c", "c -> out"],
        },
        tmp_path / "pipeline.yml",
    )


@pytest.fixture
def run(tmp_path, component, monkeypatch):
    """A scheduler on a real store, a committer over them, and a clock for how long each
    commit takes (committer.time.perf_counter: start and end of each commit)."""
    sch, store = open_run(pipeline(tmp_path, component), Settings(), tmp_path / "state")
    done: list[list] = []
    com = Committer(store, sch, COMMIT_S, done.append)
    took: list[float] = []

    def perf_counter(state={"t": 0.0, "start": True}) -> float:  # noqa: B006 - the clock's own state
        if not state["start"]:
            state["t"] += took.pop(0) if took else 0.0
        state["start"] = not state["start"]
        return state["t"]

    monkeypatch.setattr(committer_module.time, "perf_counter", perf_counter)
    yield sch, store, com, took, done
    store.close()


def emit(sch, *sizes: int) -> None:
    """c emits one Bytes value per size (as frames: header, payload)."""
    sch._emit(vertex(sch, "c", ComponentVertex), 0, [(msgpack.packb(n), bytes(n)) for n in sizes])


def test_a_commit_that_spilled_frames_spaces_the_next_by_its_cost(run):
    sch, store, com, took, _ = run
    emit(sch, SPILL_MIN * 4)
    took.append(0.1)
    assert com.commit(1.0) and store.spill.written > 0
    assert com.gap == pytest.approx(0.1 * (1 + DUTY))  # a tenth of the time goes to the disk
    emit(sch, 100)
    assert not com.commit(1.0 + 0.9)  # within the gap: not yet
    assert com.commit(1.0 + 1.01)
    assert com.gap == COMMIT_S  # that commit spilled nothing: back to every 25 ms
    emit(sch, SPILL_MIN)
    took.append(60.0)  # a stalled disk: the gap is capped (what a crash makes the run redo)
    assert com.commit(3.0) and com.gap == MAX_GAP_S


def test_a_durable_answer_does_not_wait_for_the_gap(run):
    sch, _, com, took, done = run
    emit(sch, SPILL_MIN * 4)
    took.append(0.1)
    assert com.commit(1.0)
    answer = Send(1, b"applied", durable=True)
    com.held.append(answer)
    assert com.commit(1.001)  # an Applied waiting: committed at once
    assert done[-1] == [answer]


def test_between_spaced_commits_the_journal_lets_go_of_released_frames(run):
    sch, store, com, took, _ = run
    emit(sch, SPILL_MIN * 4)
    took.append(0.1)
    assert com.commit(1.0)
    written = store.spill.written
    emit(sch, SPILL_MIN * 4, SPILL_MIN * 4)
    assert sch.journal is not None and len(sch.journal.values["c.0"][1]) == 2
    sch.pump(1.0)  # the sink takes both: released before any commit wrote them
    assert not com.commit(1.1)
    assert "c.0" not in sch.journal.values  # no reference to them is left
    emit(sch, SPILL_MIN * 2)
    assert not com.commit(1.12)  # trimmed at most every 25 ms: this one stays
    assert len(sch.journal.values["c.0"][1]) == 1
    assert com.commit(2.5)
    assert store.spill.written - written == SPILL_MIN * 2  # only the one still queued reached the disk
    assert store.db.execute("SELECT seq FROM value WHERE stream = 'c.0' ORDER BY seq").fetchall() == [(3,)]
