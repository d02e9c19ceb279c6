"""A slow stateless model stand-in: sleeps (a random 0..max_ms, or exactly max_ms when
``fixed``) and returns a pure function of its input, so any number of instances must give
exactly what one gives: ``x * 3 + 1``."""

import random
import time

from pipelogic.worker import config, run

MAX_S = float(config.max_ms) / 1000
FIXED = bool(config.fixed)


def sleeper(x: int) -> int:
    time.sleep(MAX_S if FIXED else random.uniform(0, MAX_S))
    return x * 3 + 1


run(sleeper)
