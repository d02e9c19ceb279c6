"""Simulated power loss for the snapshot writer (the last committed snapshot always loads, whatever the cut).

A recording file system keeps the writer's operations. For every prefix of the log we build
each on-disk state a power cut could leave: only fsynced file data survives, the last
un-synced writes torn at every 512-byte boundary, and un-synced directory changes (creates,
renames, unlinks) applied up to any point. The real loader runs on each state and must return
one committed snapshot, intact, and never an older one than the last snapshot reported.
The mutation checks drop the file fsync, then the directory fsync: the check must fail.
"""

from __future__ import annotations

import itertools
import os
from typing import cast

import pytest

from pipelogic.errors import SnapshotCorrupt
from pipelogic.state import FileSystem, SnapshotStore, pack_state, unpack_state

DIR = "/snap"


class RecordingFS:
    """A file system that only records; ``skip`` turns named operations into no-ops (to
    check that the checker notices a writer without them)."""

    def __init__(self, skip: frozenset[str] = frozenset()) -> None:
        self.ops: list[tuple] = []
        self.skip = skip
        self.next_fd = 3
        self.fd_path: dict[int, str] = {}

    # the writer's live view is the replay of everything so far
    def view(self) -> Disk:
        return Disk.replay(self.ops)

    def create(self, path: str) -> int:
        fd = self.next_fd
        self.next_fd += 1
        self.fd_path[fd] = path
        self.ops.append(("create", path, fd))
        return fd

    def write(self, fd: int, data: bytes) -> None:
        self.ops.append(("write", fd, bytes(data)))

    def fsync(self, fd: int) -> None:
        if "fsync" not in self.skip:
            self.ops.append(("fsync", fd))

    def close(self, fd: int) -> None:
        pass

    def replace(self, src: str, dst: str) -> None:
        self.ops.append(("replace", src, dst))

    def fsync_dir(self, path: str) -> None:
        if "fsync_dir" not in self.skip:
            self.ops.append(("fsync_dir",))

    def unlink(self, path: str) -> None:
        self.ops.append(("unlink", path))

    def listdir(self, path: str) -> list[str]:
        return [os.path.basename(p) for p in self.view().volatile_dir]

    def read(self, path: str) -> bytes:
        return bytes(self.view().files[self.view().volatile_dir[path]]["data"])


class Disk:
    """Replays an operation log; knows the volatile and the durable state."""

    def __init__(self) -> None:
        self.files: dict[int, dict] = {}  # inode -> {"data": bytearray, "synced": bytes}
        self.volatile_dir: dict[str, int] = {}
        self.durable_dir: dict[str, int] = {}
        self.pending: list[tuple] = []  # directory operations since the last fsync_dir
        self.fd_inode: dict[int, int] = {}

    @classmethod
    def replay(cls, ops: list[tuple]) -> Disk:
        d = cls()
        for op in ops:
            d.apply(op)
        return d

    def apply(self, op: tuple) -> None:
        kind = op[0]
        if kind == "create":
            inode = len(self.files) + 1
            self.files[inode] = {"data": bytearray(), "synced": b""}
            self.fd_inode[op[2]] = inode
            self.volatile_dir[op[1]] = inode
            self.pending.append(("link", op[1], inode))
        elif kind == "write":
            self.files[self.fd_inode[op[1]]]["data"] += op[2]
        elif kind == "fsync":
            f = self.files[self.fd_inode[op[1]]]
            f["synced"] = bytes(f["data"])
        elif kind == "replace":
            inode = self.volatile_dir.pop(op[1])
            self.volatile_dir[op[2]] = inode
            self.pending.append(("rename", op[1], op[2]))
        elif kind == "unlink":
            if op[1] in self.volatile_dir:
                del self.volatile_dir[op[1]]
                self.pending.append(("unlink", op[1]))
        elif kind == "fsync_dir":
            self.durable_dir = dict(self.volatile_dir)
            self.pending = []

    def crash_states(self):
        """Every directory+contents a power cut could leave."""
        for j in range(len(self.pending) + 1):
            names = dict(self.durable_dir)
            for op in self.pending[:j]:
                if op[0] == "link":
                    names[op[1]] = op[2]
                elif op[0] == "rename" and op[1] in names:
                    names[op[2]] = names.pop(op[1])
                elif op[0] == "unlink":
                    names.pop(op[1], None)
            choices = []
            for name, inode in names.items():
                f = self.files[inode]
                synced, data = f["synced"], bytes(f["data"])
                options = {synced}
                if data != synced and data.startswith(synced):
                    options.update(data[:cut] for cut in range(len(synced), len(data) + 1, 512))
                    options.add(data)
                choices.append([(name, o) for o in options])
            for combo in itertools.product(*choices):
                yield dict(combo)


class DictFS:
    """A crashed disk, for the loader."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)

    def listdir(self, path: str) -> list[str]:
        return [os.path.basename(p) for p in self.files]

    def read(self, path: str) -> bytes:
        return self.files[path]

    def unlink(self, path: str) -> None:
        self.files.pop(path, None)

    def replace(self, src: str, dst: str) -> None:
        self.files[dst] = self.files.pop(src)


def record(fs: RecordingFS, n: int) -> tuple[list[tuple], list[tuple[int, int]]]:
    """Write ``n`` snapshots (state i at tick i, sized to span several 512-byte blocks);
    returns the log and, per op index, the last tick reported before it."""
    store = SnapshotStore(DIR, "v", fs)
    reported_at: list[tuple[int, int]] = []
    for tick in range(1, n + 1):
        store.save(tick, pack_state(state_at(tick)), "run")
        reported_at.append((len(fs.ops), tick))  # the worker reports only after save returns
    return fs.ops, reported_at


def state_at(tick: int) -> dict:
    return {"tick": tick, "pad": bytes([tick]) * 1500}


def violations(ops: list[tuple], reported_at: list[tuple[int, int]]) -> list[str]:
    found = []
    for i in range(len(ops) + 1):
        reported = max((t for at, t in reported_at if at <= i), default=0)
        disk = Disk.replay(ops[:i])
        for files in disk.crash_states():
            try:
                snap = SnapshotStore(DIR, "v", cast(FileSystem, DictFS(files))).load()  # load() only reads
            except SnapshotCorrupt as exc:
                found.append(f"after op {i}: no valid snapshot ({exc})")
                continue
            if snap is None:
                if reported:
                    found.append(f"after op {i}: snapshot {reported} was reported, the loader found none")
                continue
            if unpack_state(snap.state) != state_at(snap.tick):
                found.append(f"after op {i}: snapshot {snap.tick} holds another state")
            if snap.tick < reported:
                found.append(f"after op {i}: loaded {snap.tick}, but {reported} was reported")
    return found


def test_every_power_cut_leaves_a_committed_snapshot():
    ops, reported = record(RecordingFS(), 4)
    assert violations(ops, reported) == []


@pytest.mark.parametrize("dropped", ["fsync", "fsync_dir"])
def test_the_check_catches_a_writer_without_each_fsync(dropped):
    ops, reported = record(RecordingFS(frozenset({dropped})), 4)
    assert violations(ops, reported), f"a writer without {dropped} passed the power-loss check"
