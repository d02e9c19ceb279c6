"""A stateful streaming accumulator: tick i takes exactly 1 + i % 7 messages (its pull
request depends on its state), emits the running total, and every fifth tick also the
negated tick number. Pure, so the chaos test can fold it as the reference."""

INITIAL = {"ticks": 0, "total": 0}


def window(state):
    """How many messages the next tick takes."""
    return 1 + state["ticks"] % 7


def step(xs, state):
    state["ticks"] += 1
    state["total"] += sum(xs)
    out = [state["total"]]
    if state["ticks"] % 5 == 0:
        out.append(-state["ticks"])
    return out, state
