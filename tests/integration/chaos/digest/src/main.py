"""Checks a blob from ``blobs`` and answers ``x * 2 + 1``, or a negative code naming what
was wrong: -1 the blob is not ``x``'s 8 bytes repeated, -2 a blob kept from an earlier tick
changed under us, -3 the value came another way than ``expect`` says (``shm``: a mapping
of a shared-memory slot; ``socket``: a received frame).

``keep``: hold on to views of the last ``keep`` inputs past their ticks, as user code that
keeps frames in memory does (their slots must never be overwritten). ``hold_path``: while
that file exists, ticks after the first ``hold_after`` wait (a consumer that stalls)."""

import mmap
import os
import time

from pipelogic.worker import config, run

EXPECT = str(config.expect)
HOLD = str(config.hold_path)
HOLD_AFTER = int(config.hold_after)
KEEP = int(config.keep)
kept: list[tuple[int, memoryview]] = []
done = 0


def intact(x: int, b: memoryview) -> bool:
    return len(b) % 8 == 0 and len(b) > 0 and bytes(b) == x.to_bytes(8, "little") * (len(b) // 8)


def digest(b: memoryview) -> int:
    global done
    while HOLD and done >= HOLD_AFTER and os.path.exists(HOLD):
        time.sleep(0.02)
    done += 1
    b = memoryview(b)
    x = int.from_bytes(b[:8], "little")
    via = "shm" if isinstance(b.obj, mmap.mmap) else "socket"
    if EXPECT != "any" and via != EXPECT:
        return -3
    if not intact(x, b):
        return -1
    if KEEP:
        if not all(intact(k, v) for k, v in kept):
            return -2
        kept.append((x, b))
        del kept[:-KEEP]
    return x * 2 + 1


run(digest)
