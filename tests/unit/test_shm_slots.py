"""The shared-memory path's pieces without sockets: descriptors, a producer's pool, a
consumer's reader and the broker's registry, wired together by hand over a temporary
directory (the same files a real run uses, on whatever file system the directory is)."""

from __future__ import annotations

import ctypes
import errno
import gc
import os

import pytest

from backend_stub.shm import ANYONE, Access, SlotLost, SlotRef, SlotRegistry
from backend_stub.spill import Spill
from pipelogic.errors import ProtocolError
from pipelogic.shm import (
    CTL_SLOTS,
    FREE,
    GONE,
    HELD,
    KEPT,
    MAGIC,
    ctl_name,
    decode_descriptor,
    encode_descriptor,
    pool_prefix,
    run_prefix,
    slot_name,
)
from pipelogic.shm.worker import SlotPool, SlotReader

MIB = 1 << 20
RUN = "0123456789abcdef0123456789abcdef"


def payload(x: int, n: int = MIB) -> bytes:
    return x.to_bytes(8, "little") * (n // 8)


@pytest.fixture
def world(tmp_path):
    """A registry, a producer pool for epoch 7 and a reader, over one directory."""
    reg = SlotRegistry(RUN, tmp_path)
    offer = reg.register(7, Access(os.getuid()))
    pool = SlotPool(tmp_path, offer["prefix"], 512 * 1024, 64 * MIB)
    reader = SlotReader(tmp_path)
    yield reg, pool, reader, tmp_path
    reader.close()
    pool.close()


def results(*frames):
    """Split Results entries of one tick, one output, one value: (frame, *buffers)."""
    return [(0, [[(b"value", *frames)]], None)]


def adopt(reg, epoch, desc):
    entries = results(desc)
    reg.adopt(epoch, entries)
    return entries[0][1][0][0][1]


# -- descriptors ------------------------------------------------------------------------------


def test_descriptor_round_trip_and_rejections():
    prefix = pool_prefix(RUN, 42)
    d = decode_descriptor(encode_descriptor(prefix, 5, 6_220_800))
    assert (d.prefix, d.index, d.length, d.name) == (prefix, 5, 6_220_800, f"{prefix}-5")
    bad = {
        "not magic": b"x" * 40,
        "other pool name": encode_descriptor("../../etc/passwd", 1, 10),
        "slot out of range": encode_descriptor(prefix, CTL_SLOTS, 10),
        "empty": encode_descriptor(prefix, 1, 0),
        "no name": MAGIC + bytes(12),
        "too long": encode_descriptor(prefix, 1, 10) + b"0" * 200,
    }
    for what, frame in bad.items():
        try:
            decode_descriptor(frame)
        except ValueError:
            continue
        pytest.fail(f"a descriptor frame with {what} was decoded")


# -- the producer's pool ---------------------------------------------------------------------


def test_small_payloads_stay_on_the_socket(world):
    _, pool, _, d = world
    assert pool.place(b"x" * 1000) is None
    assert os.listdir(d) == []


def test_a_slot_is_reused_once_the_broker_gives_it_back(world):
    reg, pool, _reader, _d = world
    ref = adopt(reg, 7, pool.place(payload(1)))
    assert type(ref) is SlotRef and len(ref) == MIB and ref.bytes == payload(1)
    assert pool._ctl is not None and pool._ctl[ref._index] == HELD
    second = adopt(reg, 7, pool.place(payload(2)))  # the first is held: a second slot
    assert second._index != ref._index and pool.created == 2
    index = ref._index
    del ref
    gc.collect()
    assert pool._ctl[index] == FREE
    third = adopt(reg, 7, pool.place(payload(3)))
    assert third._index == index and pool.created == 2  # reused, not created
    assert third.bytes == payload(3) and second.bytes == payload(2)


def test_the_pool_is_bounded_and_falls_back_to_the_socket(tmp_path):
    reg = SlotRegistry(RUN, tmp_path)
    pool = SlotPool(tmp_path, reg.register(1, Access(os.getuid()))["prefix"], 512 * 1024, 3 * MIB)
    refs = [adopt(reg, 1, pool.place(payload(i))) for i in range(3)]
    assert pool.place(payload(9)) is None and pool.fallbacks == 1
    del refs[0]
    gc.collect()
    assert pool.place(payload(9)) is not None  # room again
    pool.close()


def test_reader_maps_the_slot_and_marks_what_user_code_keeps(world):
    reg, pool, reader, d = world
    ref = adopt(reg, 7, pool.place(payload(4)))
    view = reader.resolve(bytes(ref))
    assert bytes(view) == payload(4)
    del view  # the user's function returned and dropped its input
    reader.settle()
    assert pool._ctl[ref._index] == HELD  # not kept: nothing marked
    # User code keeps a view past the tick: settle marks the slot KEPT...
    ref2 = adopt(reg, 7, pool.place(payload(5)))
    kept = reader.resolve(bytes(ref2))
    reader.settle()
    assert pool._ctl[ref2._index] == KEPT and reader.kept == 1
    # The producer does not touch it while the broker holds it...
    index = ref2._index
    for i in range(2):
        adopt(reg, 7, pool.place(payload(10 + i)))
    assert pool._ctl[index] == KEPT and pool.abandoned == 0
    # ...the broker's release marks it GONE, and the producer lets it go instead of reusing it.
    del ref, ref2
    gc.collect()
    assert pool._ctl[index] == GONE
    for i in range(4):
        adopt(reg, 7, pool.place(payload(10 + i)))  # dropped at once: released
    assert pool.abandoned == 1
    assert slot_name(pool.prefix, index) not in os.listdir(d)
    assert bytes(kept) == payload(5)  # the kept view still reads what it was given
    del kept


def test_reader_leaves_other_frames_alone(tmp_path):
    reader = SlotReader(tmp_path)
    frame = b"y" * (64 * 1024)
    assert reader.resolve(frame) is frame
    assert reader.pending == []


def test_reader_refuses_a_slot_shorter_than_its_descriptor(world):
    _reg, pool, reader, _d = world
    desc = pool.place(payload(1))
    forged = encode_descriptor(pool.prefix, decode_descriptor(desc).index, 2 * MIB)
    with pytest.raises(ValueError, match="has 1048576 bytes"):
        reader.resolve(forged)


# -- the broker's registry ------------------------------------------------------------------


def test_registry_refuses_forged_and_repeated_descriptors(world):
    reg, pool, _, _ = world
    desc = pool.place(payload(1))
    with pytest.raises(ProtocolError, match="no pool"):
        adopt(reg, 8, desc)  # an epoch that did not prove it shares the directory
    other = reg.register(9, Access(os.getuid()))["prefix"]
    with pytest.raises(ProtocolError, match="not of its own"):
        adopt(reg, 9, desc)  # another worker's slot
    with pytest.raises(ProtocolError, match="not a shared-memory descriptor|bad pool name"):
        adopt(reg, 7, MAGIC + b"\x01" * 12 + b"junk")
    ref = adopt(reg, 7, desc)
    with pytest.raises(ProtocolError, match="sent again"):
        adopt(reg, 7, desc)
    assert ref.bytes == payload(1) and other


def test_payload_frames_and_values_without_buffers_are_untouched(world):
    reg, _, _, _ = world
    big = b"z" * (64 * 1024)
    entries = [(0, [[(b"v",), (b"w", big)]], None)]
    reg.adopt(7, entries)
    assert entries[0][1][0] == [(b"v",), (b"w", big)]


def test_frames_leaving_the_host_carry_the_payload(world, tmp_path):
    reg, pool, _, _ = world
    ref = adopt(reg, 7, pool.place(payload(6)))
    assert reg.resolve([b"header", ref, b"x"]) == [b"header", payload(6), b"x"]
    spill = Spill(tmp_path / "frames")  # what the recovery store writes: the bytes
    [(_, _, row)] = spill.pack_rows([("s.0", 0, [ref])])
    assert spill.unpack_row("s.0", 0, row) == (payload(6),)
    assert ref.buffer == payload(6)  # what sinks and dead letters decode


def test_the_store_spills_a_slot_through_the_kernel_not_through_the_broker(world, tmp_path, monkeypatch):
    """The recovery store's spill copies a slot's payload file to file (sendfile): the
    broker never reads it into its memory. Where sendfile is refused, through a mapping."""
    reg, pool, _, _ = world
    refs = [adopt(reg, 7, pool.place(payload(i))) for i in (4, 5)]

    def no_read(self, ref):
        raise AssertionError("the spill read a slot into the broker's memory")

    monkeypatch.setattr(SlotRegistry, "read", no_read)
    spill = Spill(tmp_path / "frames")
    rows = spill.pack_rows([("s.0", 0, [b"header", refs[0]]), ("s.0", 1, [refs[1]])])
    assert spill.written == 2 * MIB
    assert [spill.unpack_row("s.0", i, row) for i, (_, _, row) in enumerate(rows)] == [
        (b"header", payload(4)),
        (payload(5),),
    ]

    def refused(*args):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", refused)
    [(_, _, row)] = spill.pack_rows([("s.0", 2, [refs[1]])])
    assert spill.unpack_row("s.0", 2, row) == (payload(5),)


def test_a_slot_cut_short_behind_the_brokers_back_cannot_be_spilled(world, tmp_path):
    reg, pool, _, d = world
    ref = adopt(reg, 7, pool.place(payload(3)))
    os.truncate(d / ref.name, MIB // 2)
    with pytest.raises(SlotLost, match="a process other than the broker removed or truncated it"):
        Spill(tmp_path / "frames").pack_rows([("s.0", 0, [ref])])


def test_a_dead_pool_is_reclaimed_as_the_broker_lets_go(world):
    reg, pool, _, d = world
    held = adopt(reg, 7, pool.place(payload(1)))
    freed = adopt(reg, 7, pool.place(payload(2)))
    freed_name = freed.name
    del freed
    gc.collect()
    pool._ctl = None  # the producer dies without closing anything (SIGKILL)
    pool.slots.clear()
    reg.reap(lambda epoch: False)
    left = sorted(os.listdir(d))
    assert freed_name not in left
    assert left == sorted([held.name, ctl_name(pool.prefix)])
    assert reg.readable_by(7) is False
    name = held.name
    del held
    gc.collect()
    assert os.listdir(d) == [], f"{name} and the control file stay after the last release"
    assert reg.pools == {}


def test_a_live_pool_is_left_alone_and_sweep_clears_the_run(world):
    reg, pool, _, d = world
    ref = adopt(reg, 7, pool.place(payload(1)))
    reg.reap(lambda epoch: True)
    assert len(os.listdir(d)) == 2
    (d / "unrelated-file").write_bytes(b"keep me")
    assert reg.sweep() == 2
    assert os.listdir(d) == ["unrelated-file"]
    del ref
    gc.collect()  # a release after the sweep is harmless


def test_probe_names_are_checked(tmp_path, monkeypatch):
    reg = SlotRegistry(RUN, tmp_path)
    (tmp_path / ("pipelogic-probe-" + "ab" * 12)).touch()
    (tmp_path / "target").touch()
    os.symlink(tmp_path / "target", tmp_path / ("pipelogic-probe-" + "cd" * 12))
    assert reg.probe("pipelogic-probe-" + "ab" * 12) == Access(os.getuid())
    assert reg.probe("pipelogic-probe-" + "cd" * 12) is None  # a symlink proves nothing
    for name in ("../target", "", "pipelogic-probe-" + "ef" * 12):
        assert reg.probe(name) is None
    monkeypatch.setenv("PIPELOGIC_SHM", "0")
    assert reg.probe("pipelogic-probe-" + "ab" * 12) is None


def test_descriptors_go_only_to_a_worker_of_the_producers_user(world):
    reg, pool, _, _ = world
    ref = adopt(reg, 7, pool.place(payload(3)))
    reg.register(20, Access(os.getuid()))
    reg.register(21, Access(os.getuid() + 1))
    assert reg.resolve_for(20, [b"h", ref]) == [b"h", ref]  # maps it itself
    assert reg.resolve_for(21, [b"h", ref]) == [b"h", payload(3)]  # another user: 0600 files
    assert reg.resolve_for(22, [b"h", ref]) == [b"h", payload(3)]  # does not share the directory
    assert reg.stats()["held"] == 1


def test_a_slot_removed_behind_the_brokers_back_is_reported(world):
    reg, pool, _, d = world
    ref = adopt(reg, 7, pool.place(payload(3)))
    os.unlink(d / ref.name)
    with pytest.raises(SlotLost, match="a process other than the broker removed or truncated it"):
        _ = ref.bytes


def test_files_take_the_mode_asked_for_whatever_the_umask(tmp_path, monkeypatch):
    from pipelogic.shm.worker import make_probe

    monkeypatch.setenv("PIPELOGIC_SHM_DIR", str(tmp_path))
    old = os.umask(0o022)
    try:
        reg = SlotRegistry(RUN, tmp_path)
        probe = make_probe()
        assert (tmp_path / probe).stat().st_mode & 0o777 == 0o600
        assert reg.probe(probe) == Access(os.getuid())
        monkeypatch.setenv("PIPELOGIC_SHM_MODE", "666")
        probe = make_probe()
        assert (tmp_path / probe).stat().st_mode & 0o777 == 0o666
        assert reg.probe(probe) == Access(ANYONE)  # every worker sharing the directory may map its slots
        pool = SlotPool(tmp_path, reg.register(3, Access(ANYONE))["prefix"], 512 * 1024, 8 * MIB)
        ref = adopt(reg, 3, pool.place(payload(1)))
        assert (tmp_path / ref.name).stat().st_mode & 0o777 == 0o666
        reg.register(4, Access(os.getuid() + 1))
        assert reg.resolve_for(4, [ref]) == [ref]  # another user, but the files are 0666
        monkeypatch.setenv("PIPELOGIC_SHM_MODE", "644")
        assert make_probe() == ""  # refused with a warning: shared memory off
        del ref
        pool.close()
    finally:
        os.umask(old)


def test_group_readable_pools_go_to_members_of_their_group_only(tmp_path, monkeypatch):
    """PIPELOGIC_SHM_MODE=660: the probe and control file 0660, the slots 0640, whatever the
    umask; the broker reads the owner and group off the probe and gives descriptors to the
    producer's user and to workers whose Hello lists the group; any other gets the bytes."""
    from pipelogic.shm.worker import make_probe

    monkeypatch.setenv("PIPELOGIC_SHM_DIR", str(tmp_path))
    monkeypatch.setenv("PIPELOGIC_SHM_MODE", "660")
    old = os.umask(0o077)
    try:
        reg = SlotRegistry(RUN, tmp_path, secure=True)
        probe = make_probe()
        assert (tmp_path / probe).stat().st_mode & 0o777 == 0o660
        access = reg.probe(probe)
        assert access == Access(os.getuid(), os.getgid())
        pool = SlotPool(tmp_path, reg.register(3, access, [os.getgid()])["prefix"], 512 * 1024, 8 * MIB)
        ref = adopt(reg, 3, pool.place(payload(1)))
        assert (tmp_path / ref.name).stat().st_mode & 0o777 == 0o640  # the group never writes a payload
        assert (tmp_path / ctl_name(pool.prefix)).stat().st_mode & 0o777 == 0o660  # KEPT marks
        other = os.getuid() + 1
        reg.register(4, Access(other), [os.getgid() + 7, os.getgid()])  # a consumer given the group
        reg.register(5, Access(other), [os.getgid() + 7])  # a worker of the pipeline without it
        reg.register(6, Access(other), ["0", -1, None])  # junk in a Hello is no group
        assert reg.resolve_for(4, [ref]) == [ref]
        assert reg.resolve_for(5, [ref]) == [payload(1)]
        assert reg.resolve_for(6, [ref]) == [payload(1)]
        assert reg.resolve_for(3, [ref]) == [ref]  # the producer's own user
        del ref
        pool.close()
    finally:
        os.umask(old)


def test_a_secure_registry_offers_nothing_to_world_readable_files(tmp_path, monkeypatch, caplog):
    """Under keys the broker never offers the path to a worker with 0666 files (anyone
    reaching the directory could read them); it says so once, and 0600 and 0660 still get it."""
    from pipelogic.shm.worker import make_probe

    monkeypatch.setenv("PIPELOGIC_SHM_DIR", str(tmp_path))
    reg = SlotRegistry(RUN, tmp_path, secure=True)
    monkeypatch.setenv("PIPELOGIC_SHM_MODE", "666")
    open_probes = [make_probe(), make_probe()]
    assert [reg.probe(p) for p in open_probes] == [None, None]
    assert [r.message for r in caplog.records].count(
        "broker: a worker's shared-memory files are 0666 (PIPELOGIC_SHM_MODE=666), which any process reaching "
        f"{tmp_path} can read; with keys, its large values go over the socket (use 660)"
    ) == 1
    assert SlotRegistry(RUN, tmp_path).probe(open_probes[0]) == Access(ANYONE)  # without keys: fine
    monkeypatch.setenv("PIPELOGIC_SHM_MODE", "600")
    assert reg.probe(make_probe()) == Access(os.getuid())


# -- loans --------------------------------------------------------------------------------------


def test_a_loan_returned_as_output_is_sent_without_a_copy(world):
    reg, pool, reader, _ = world
    buf = pool.lend(MIB)
    assert buf is not None and not buf.readonly and pool.loaned == 1
    buf[:] = payload(7)
    desc = pool.place(buf)  # the loan itself: no copy, its slot is sent
    ref = adopt(reg, 7, desc)
    assert pool._ctl[ref._index] == HELD and pool._loans == {}
    view = reader.resolve(bytes(ref))
    assert bytes(view) == payload(7)
    del view
    reader.settle()


def test_a_loan_is_not_handed_out_twice_and_comes_back_when_dropped(world):
    _, pool, _, _ = world
    first = pool.lend(MIB)
    second = pool.lend(MIB)
    assert first is not None and second is not None
    index_of = {ctypes.addressof(ctypes.c_char.from_buffer(b)): i for i, (_, b) in enumerate([(0, first), (1, second)])}
    assert len(index_of) == 2  # two slots, not one lent twice
    # A value placed while both are out does not land in either.
    assert pool.place(payload(1)) is not None and pool.created == 3
    created = pool.created
    del first, second  # dropped unreturned: the slots are the pool's again
    assert pool.lend(MIB) is not None and pool.created == created


def test_part_of_a_loan_or_plain_memory_is_copied(world):
    reg, pool, _reader, _ = world
    buf = pool.lend(2 * MIB)
    assert buf is not None
    buf[:MIB] = payload(3)
    ref = adopt(reg, 7, pool.place(buf[MIB // 2 :]))  # not from the loan's start: copied into another slot
    assert ref.bytes == bytes(buf[MIB // 2 :])
    assert len(pool._loans) == 1


def test_loan_outside_a_worker_is_plain_memory():
    from pipelogic.worker import loan

    mv = loan(1000)
    assert isinstance(mv, memoryview) and len(mv) == 1000 and not mv.readonly
    np = pytest.importorskip("numpy")
    arr = loan((4, 5, 3), "uint16")
    assert arr.shape == (4, 5, 3) and arr.dtype == np.uint16 and arr.flags.writeable
    with pytest.raises(ValueError, match="negative size"):
        loan((-1, 2))


def test_reader_reuses_a_slots_mapping_until_its_file_is_replaced(world):
    reg, pool, reader, d = world
    ref = adopt(reg, 7, pool.place(payload(1)))
    name = ref.name
    first = reader.resolve(bytes(ref))
    assert bytes(first) == payload(1)
    mapping = id(first.obj)  # (an id: holding the mapping itself would count as keeping it)
    del first
    reader.settle()
    del ref
    gc.collect()  # released: FREE, so the next value reuses the slot
    ref = adopt(reg, 7, pool.place(payload(2)))
    assert ref.name == name
    again = reader.resolve(bytes(ref))
    assert id(again.obj) == mapping and bytes(again) == payload(2)  # the same mapping, the new value
    del again
    reader.settle()
    # The producer replaces the file (as after abandoning a kept slot): a new mapping.
    os.unlink(d / name)
    (d / name).write_bytes(payload(3))
    fresh = reader.resolve(bytes(ref))
    assert id(fresh.obj) != mapping and bytes(fresh) == payload(3)
    del fresh
    reader.settle()


def test_a_tick_naming_a_removed_slot_is_from_a_broker_that_is_gone(world):
    """A restarted broker removes its predecessor's pools: a tick of the old broker still
    being decoded names a slot that is gone. That is no bad input (which fails the run)
    but the sign to rejoin."""
    from pipelogic.shm.worker import SlotGone
    from pipelogic.worker._inputs import InputDecoder

    reg, pool, reader, _d = world
    desc = pool.place(payload(1))
    reg.sweep()
    with pytest.raises(SlotGone, match="has restarted"):
        reader.resolve(desc)
    dec = InputDecoder("v", ["Bytes"], [], reader.resolve)
    with pytest.raises(SlotGone):
        dec.decode([[(b"\xc7\x04\x01\x00\x00\x00\x00", desc)]], False)


# -- a run's lock: the pools of a broker killed for good ----------------------------------------


def _fake_run(d, run: str) -> list[str]:
    """The files a run's broker and one worker leave when both are SIGKILLed: the lock
    file (no longer held) and a pool of two slots and its control file."""
    prefix = pool_prefix(run, 3)
    names = [f"{run_prefix(run)}lock", slot_name(prefix, 0), slot_name(prefix, 1), ctl_name(prefix)]
    for n in names:
        (d / n).write_bytes(b"x")
    return names


def test_a_starting_broker_removes_the_pools_of_runs_whose_broker_died(tmp_path):
    import fcntl

    dead = _fake_run(tmp_path, "dead" + "0" * 28)
    live = _fake_run(tmp_path, "1" * 32)
    holder = os.open(tmp_path / live[0], os.O_RDONLY)  # a live broker's lock: held
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    (tmp_path / "unrelated-file").write_bytes(b"keep me")
    try:
        reg = SlotRegistry(RUN, tmp_path)
        assert reg.claim()
        left = set(os.listdir(tmp_path))
        assert not left & set(dead)  # every file of the dead run, its lock file last
        assert set(live) <= left  # a live run is left alone
        assert {"unrelated-file", reg.lock_name} <= left
        # This registry's lock is held now: a second one of the run cannot have it, and
        # another broker's start does not take this run for a dead one.
        other = SlotRegistry("abcdef" + "2" * 26, tmp_path)
        assert other.claim() and reg.lock_name in os.listdir(tmp_path)
        other.close()
        reg.close()
        assert reg.lock_name not in os.listdir(tmp_path)
    finally:
        os.close(holder)
    # The live run's broker died since: the next start removes its files.
    reg = SlotRegistry(RUN, tmp_path)
    assert reg.claim()
    assert sorted(os.listdir(tmp_path)) == sorted(["unrelated-file", reg.lock_name])
    reg.close()


def test_a_broker_whose_lock_is_held_keeps_to_sockets(tmp_path, monkeypatch):
    import fcntl

    import backend_stub.shm as slots

    monkeypatch.setattr(slots, "_LOCK_WAIT_S", 0.05)
    reg = SlotRegistry(RUN, tmp_path)
    holder = os.open(tmp_path / reg.lock_name, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        assert not reg.claim()
    finally:
        os.close(holder)
    assert reg.claim()  # free again
    reg.close()
    assert not SlotRegistry(RUN, tmp_path / "no-such-directory").claim()


def test_the_sweep_keeps_the_runs_own_lock_file(tmp_path):
    reg = SlotRegistry(RUN, tmp_path)
    assert reg.claim()  # as a broker starts: before any worker registers
    pool = SlotPool(tmp_path, reg.register(7, Access(os.getuid()))["prefix"], 512 * 1024, 64 * MIB)
    ref = adopt(reg, 7, pool.place(payload(1)))
    assert reg.sweep() == 2  # the slot and its control file, not the lock
    assert os.listdir(tmp_path) == [reg.lock_name]
    del ref
    gc.collect()
    pool.close()
    reg.close()
    assert os.listdir(tmp_path) == []


def test_a_killed_workers_probe_is_removed_a_live_ones_kept(tmp_path, monkeypatch):
    from pipelogic.shm import files as worker_shm

    monkeypatch.setenv("PIPELOGIC_SHM", "1")
    monkeypatch.setenv("PIPELOGIC_SHM_DIR", str(tmp_path))
    live = worker_shm.make_probe()
    dead = worker_shm.make_probe()
    assert sorted(os.listdir(tmp_path)) == sorted([live, dead])  # renamed once locked
    os.close(worker_shm._PROBES.pop(dead))  # its worker was SIGKILLed: the kernel drops the lock
    reg = SlotRegistry(RUN, tmp_path)
    assert reg.claim()
    assert sorted(os.listdir(tmp_path)) == sorted([live, reg.lock_name])
    assert reg.probe(live) is not None  # a live worker's handshake still works
    worker_shm.remove_probe(live)
    assert live not in worker_shm._PROBES
    reg.close()
    assert os.listdir(tmp_path) == []
