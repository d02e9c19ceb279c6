"""A stateful counter: per-key count, sum, min and max (key = value mod 50); emits the
running sum of everything seen. Pure, so the chaos test can fold it as the reference."""

INITIAL = {"n": 0, "sum": 0, "keys": {}}


def step(x, state):
    k = x % 50
    count, total, lo, hi = state["keys"].get(k, (0, 0, x, x))
    state["keys"][k] = (count + 1, total + x, min(lo, x), max(hi, x))
    state["n"] += 1
    state["sum"] += x
    return state["sum"], state
