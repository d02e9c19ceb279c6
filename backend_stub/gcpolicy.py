"""How the broker's process collects garbage while it serves (see :func:`few_full_collections`)."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["few_full_collections"]


@contextlib.contextmanager
def few_full_collections() -> Iterator[None]:
    """While the broker serves: Python's cyclic garbage collector seldom walks every object.

    The broker holds many long-lived objects (a stateful vertex's logged ticks since its
    last snapshots, queued messages); with the default thresholds a full collection runs
    each time a quarter of them is new, and walking them all took a quarter of the broker's
    time (scripts/bench_broker_store.py, stateful with 1 s snapshots: 84,000 -> 105,000
    messages/s). Young objects are still collected as often as before, and the broker makes
    no reference cycles on its hot path, so memory does not grow from this."""
    global _serving, _thresholds
    with _gc_lock:  # brokers in one process (tests): the first in sets, the last out restores
        if _serving == 0:
            _thresholds = gc.get_threshold()
            gc.freeze()  # what exists before serving (modules, the pipeline) is never walked again
            gc.set_threshold(_thresholds[0], _thresholds[1], max(_thresholds[2], 1000))
        _serving += 1
    try:
        yield
    finally:
        with _gc_lock:
            _serving -= 1
            if _serving == 0:
                gc.set_threshold(*_thresholds)
                gc.unfreeze()


_gc_lock = threading.Lock()
_serving = 0
_thresholds = gc.get_threshold()
