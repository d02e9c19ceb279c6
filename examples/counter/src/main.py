from pipelogic.worker import run


def counter(message, state):
    new_state = state + 1
    return {"output": new_state, "state": new_state}


run(counter, initial_state=0)
