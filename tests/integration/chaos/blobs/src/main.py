"""A producer of large values: ``x``'s 8 bytes repeated to ``mib`` MiB (with the
shared-memory path on, each goes through a slot of this worker's pool)."""

from pipelogic.worker import config, run

REPEAT = int(float(config.mib) * (1 << 20)) // 8


def blob(x: int) -> bytes:
    return x.to_bytes(8, "little") * REPEAT


run(blob)
