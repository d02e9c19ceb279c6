"""A producer of large values: ``x``'s 8 bytes repeated to ``mib`` MiB (with the
shared-memory path on, each goes through a slot of this worker's pool). ``loan``: build
each in a buffer from ``pipelogic.worker.loan`` (written in place, sent with no copy)."""

from pipelogic.worker import config, loan, run

REPEAT = int(float(config.mib) * (1 << 20)) // 8
LOAN = bool(config.loan)


def blob(x: int) -> bytes | memoryview:
    data = x.to_bytes(8, "little") * REPEAT
    if not LOAN:
        return data
    buf = loan(len(data))
    buf[:] = data
    return buf


run(blob)
