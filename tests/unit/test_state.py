"""State serialisation, the snapshot policy, and the snapshot store on a real directory."""

import os

import numpy as np
import pytest

from pipelogic.errors import SnapshotCorrupt, SnapshotValueError, StateLocked
from pipelogic.state import SnapshotPolicy, SnapshotStore, pack_state, unpack_state
from pipelogic.types import Record, Variant


def test_state_values_round_trip_with_their_types():
    state = {
        "n": 3, "big": 2**80, "neg": -(2**70), "f": 1.5, "s": "x", "b": b"\x00\xff", "none": None,
        "t": (1, (2, 3)), "set": {1, 2}, "fs": frozenset({"a"}), 7: "int key", (1, "k"): [1, 2],
        "rec": Record({"x": 1.0, "y": 2.0}, "{x: Double, y: Double}"), "var": Variant("Just", 3),
    }
    back = unpack_state(pack_state(state))
    assert back == state
    assert isinstance(back["t"], tuple) and isinstance(back["set"], set) and isinstance(back["rec"], Record)
    assert str(back["rec"].__pipelang_type__) == str(state["rec"].__pipelang_type__)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = unpack_state(pack_state({"a": arr}))["a"]
    assert got.dtype == arr.dtype and got.shape == arr.shape and (got == arr).all()


def test_unserialisable_state_names_type_and_path():
    class Model:
        pass

    with pytest.raises(SnapshotValueError) as exc:
        pack_state({"cache": [1, 2, Model()]}, "counter")
    msg = str(exc.value)
    assert "vertex counter: state['cache'][2]" in msg and "Model" in msg and "pickle" in msg
    with pytest.raises(SnapshotValueError, match="ndarray"):
        pack_state(np.array([object()]))


@pytest.mark.parametrize("text, ticks, seconds", [
    ("tick", 1, None), ("500 ticks", 500, None), ("ticks:7", 7, None), ("2 s", None, 2.0),
    ("seconds:0.5", None, 0.5), ("100 ticks or 2s", 100, 2.0), ("off", None, None),
    ({"every_ticks": 3, "every_seconds": 1}, 3, 1.0),
])
def test_policy_forms(text, ticks, seconds):
    p = SnapshotPolicy.parse(text)
    assert (p.every_ticks, p.every_seconds) == (ticks, seconds)
    assert SnapshotPolicy.parse(p.to_text()) == p


@pytest.mark.parametrize("bad", ["sometimes", "0 ticks", {"every_ticks": 0}, {"often": 1}, 5])
def test_policy_errors_say_what_is_expected(bad):
    with pytest.raises(ValueError, match="snapshot"):
        SnapshotPolicy.parse(bad)


def test_policy_due():
    p = SnapshotPolicy(10, 1.0)
    assert not p.due(0, 5.0) and p.due(10, 0.0) and p.due(1, 1.0) and not p.due(9, 0.5)
    assert not SnapshotPolicy(None, None).due(10**6, 10**6)


def test_store_keeps_two_generations_and_falls_back(tmp_path):
    store = SnapshotStore(tmp_path, "v")
    assert store.load() is None
    for t in range(1, 5):
        store.save(t, pack_state(t), "run")
    names = sorted(p for p in os.listdir(tmp_path) if p.endswith(".plsnap"))
    assert len(names) == 2
    newest = tmp_path / names[-1]
    newest.write_bytes(newest.read_bytes()[:-1] + b"X")
    snap = SnapshotStore(tmp_path, "v").load()
    assert snap.tick == 3 and unpack_state(snap.state) == 3
    (tmp_path / names[0]).write_bytes(b"garbage")
    with pytest.raises(SnapshotCorrupt, match="refusing to start from empty state"):
        SnapshotStore(tmp_path, "v").load()


def test_store_lock_is_exclusive_and_released(tmp_path):
    a, b = SnapshotStore(tmp_path, "v"), SnapshotStore(tmp_path, "v")
    a.lock()
    with pytest.raises(StateLocked, match=f"pid {os.getpid()}"):
        b.lock()
    a.unlock()
    b.lock()
    b.unlock()


def test_store_removes_uncommitted_temp_files(tmp_path):
    store = SnapshotStore(tmp_path, "v")
    store.save(1, pack_state(1), "run")
    (tmp_path / "snapshot-000000000002.tmp").write_bytes(b"half")
    snap = SnapshotStore(tmp_path, "v").load()
    assert snap.tick == 1 and not list(tmp_path.glob("*.tmp"))
