import copy

from logic import INITIAL, step, window

from pipelogic.worker import InputsPullOption, InputsPullRequest, StreamPullShift, run


def request(state):
    k = window(state)
    return InputsPullRequest(InputsPullOption([StreamPullShift.from_fixed(0, k, k)]))


def accumulate(xs, state):
    out, state = step(xs, state)
    return {"output": out, "state": state, "pull_request": request(state)}


initial = copy.deepcopy(INITIAL)
run(accumulate, initial_state=initial, initial_pull_request=request(initial))
