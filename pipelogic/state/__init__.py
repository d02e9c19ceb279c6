"""Durable worker state: snapshot files, state serialisation and the snapshot policy.

Pure file I/O, no sockets: the worker runtime decides when to snapshot and talks to the
broker; this package only makes each snapshot atomic, durable, checked and single-writer.
"""

from pipelogic.state._fs import FileSystem, OsFileSystem
from pipelogic.state._policy import DEFAULT_POLICY, SnapshotPolicy
from pipelogic.state._store import Snapshot, SnapshotStore, decode_snapshot, encode_snapshot
from pipelogic.state._values import SourceClasses, pack_state, unpack_state

__all__ = [
    "DEFAULT_POLICY",
    "FileSystem",
    "OsFileSystem",
    "Snapshot",
    "SnapshotPolicy",
    "SnapshotStore",
    "SourceClasses",
    "decode_snapshot",
    "encode_snapshot",
    "pack_state",
    "unpack_state",
]
