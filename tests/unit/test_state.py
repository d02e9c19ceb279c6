"""State serialisation, the snapshot policy, and the snapshot store on a real directory."""

import collections
import dataclasses
import datetime as dt
import enum
import os
import socket
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

import msgpack
import numpy as np
import pytest

from pipelogic.errors import SnapshotCorrupt, SnapshotValueError, StateLocked
from pipelogic.state import SnapshotPolicy, SnapshotStore, SourceClasses, pack_state, unpack_state
from pipelogic.state._values import _NAMEDTUPLE
from pipelogic.types import Record, Variant


def test_state_values_round_trip_with_their_types():
    state = {
        "n": 3,
        "big": 2**80,
        "neg": -(2**70),
        "f": 1.5,
        "s": "x",
        "b": b"\x00\xff",
        "none": None,
        "t": (1, (2, 3)),
        "set": {1, 2},
        "fs": frozenset({"a"}),
        7: "int key",
        (1, "k"): [1, 2],
        "rec": Record({"x": 1.0, "y": 2.0}, "{x: Double, y: Double}"),
        "var": Variant("Just", 3),
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


@pytest.mark.parametrize(
    "text, ticks, seconds",
    [
        ("tick", 1, None),
        ("500 ticks", 500, None),
        ("ticks:7", 7, None),
        ("2 s", None, 2.0),
        ("seconds:0.5", None, 0.5),
        ("100 ticks or 2s", 100, 2.0),
        ("off", None, None),
        ({"every_ticks": 3, "every_seconds": 1}, 3, 1.0),
    ],
)
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


# -- the platform's "state is Any": the types a natural component keeps (issue 24) ----------


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Perm(enum.Flag):
    R = 1
    W = 2


class Point(NamedTuple):
    x: int
    y: float = 0.0


@dataclasses.dataclass(frozen=True)
class Window:
    items: collections.deque
    seen: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        raise AssertionError("restoring a snapshot must not call the class")


OWN = SourceClasses([Path(__file__).parent])


def test_collections_times_numbers_and_own_classes_come_back_as_the_same_types():
    state = {
        "deque": collections.deque([1, 2, 3], maxlen=3),
        "unbounded": collections.deque("ab"),
        "counter": collections.Counter("abca"),
        "ordered": collections.OrderedDict(b=1, a=2),
        "dd": collections.defaultdict(list, {"k": [1]}),
        "dd_none": collections.defaultdict(None, {1: 2}),
        "dd_counter": collections.defaultdict(collections.Counter),
        "when": dt.datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Paris")),
        "offset": dt.datetime(2026, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=3))),
        "naive": dt.datetime(2026, 1, 2, 3),
        "day": dt.date(2020, 2, 29),
        "clock": dt.time(1, 2, 3, 4),
        "span": dt.timedelta(days=-1, seconds=5, microseconds=7),
        "price": Decimal("1.10"),
        "ratio": Fraction(2**70, 3),
        "mode": Mode.SLOW,
        "perm": Perm.R | Perm.W,
        "point": Point(1, 2.5),
        "nested": [Point(2), {Mode.FAST: collections.deque([Point(3)], maxlen=1)}],
    }
    back = unpack_state(pack_state(state, "v", OWN), OWN)
    for key, value in state.items():
        assert back[key] == value and type(back[key]) is type(value), key
    assert back["deque"].maxlen == 3 and back["unbounded"].maxlen is None
    assert back["dd"].default_factory is list and back["dd_counter"].default_factory is collections.Counter
    back["dd"]["new"].append(1)  # a defaultdict still makes missing keys
    assert back["when"].tzinfo is ZoneInfo("Europe/Paris") and back["when"].utcoffset() == state["when"].utcoffset()
    assert str(back["price"]) == "1.10" and back["mode"] is Mode.SLOW
    assert list(back["ordered"]) == ["b", "a"]


def test_a_frozen_dataclass_is_restored_without_calling_it():
    w = object.__new__(Window)
    object.__setattr__(w, "items", collections.deque([1, 2], maxlen=2))
    object.__setattr__(w, "seen", collections.Counter({"x": 2}))
    back = unpack_state(pack_state(w, "v", OWN), OWN)
    assert type(back) is Window and back.items.maxlen == 2 and back.seen == collections.Counter({"x": 2})


def test_classes_outside_the_components_source_are_refused_both_ways():
    @dataclasses.dataclass
    class Local:
        x: int = 0

    with pytest.raises(SnapshotValueError, match="state\\['a'\\]: .*Local.*inside a function"):
        pack_state({"a": Local()}, "v", OWN)
    # Not under the roots: this module's classes are not "own" to a component elsewhere.
    elsewhere = SourceClasses(["/nonexistent-component"])
    with pytest.raises(SnapshotValueError, match="not defined in the component's own source"):
        pack_state(Point(1), "v", elsewhere)
    with pytest.raises(SnapshotValueError, match="collections.defaultdict.*factory"):
        pack_state(collections.defaultdict(lambda: 0), "v", OWN)
    with pytest.raises(SnapshotValueError, match=r"state\.items\[0\]: cannot snapshot a value of type socket.socket"):
        pack_state(_window_with_socket(), "v", OWN)
    # A snapshot that names a class it may not build is refused, and nothing is imported.
    data = pack_state(Point(1), "v", OWN)
    with pytest.raises(SnapshotValueError, match="does not define"):
        unpack_state(data, elsewhere)
    forged = msgpack.packb(msgpack.ExtType(_NAMEDTUPLE, msgpack.packb(["this_module_does_not_exist_24", "Point", [1]])))
    assert "this_module_does_not_exist_24" not in sys.modules
    with pytest.raises(SnapshotValueError, match="this_module_does_not_exist_24.Point"):
        unpack_state(forged, OWN)
    assert "this_module_does_not_exist_24" not in sys.modules


def _window_with_socket() -> Window:
    w = object.__new__(Window)
    sock = socket.socket()
    sock.close()
    object.__setattr__(w, "items", collections.deque([sock]))
    object.__setattr__(w, "seen", collections.Counter())
    return w
