import copy

from logic import INITIAL, step

from pipelogic.worker import run


def counter(x, state):
    out, state = step(x, state)
    return {"output": out, "state": state}


run(counter, initial_state=copy.deepcopy(INITIAL))
