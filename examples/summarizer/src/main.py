"""An audio-summarizer stand-in: asymmetric rates through streaming mode.

Each tick pulls exactly one second of samples; every `seconds` ticks it emits one summary
(peak and mean over that window), so `sample_rate * seconds` messages in give one out.
"""

from pipelogic.types import InputsPullOption, InputsPullRequest, StreamPullShift
from pipelogic.worker import config, run

RATE = int(config.sample_rate)
ONE_SECOND = InputsPullRequest(InputsPullOption([StreamPullShift.from_fixed(0, RATE, RATE)]))


def summarize(samples, state):
    window = state["window"] + samples
    seconds = state["seconds"] + 1
    out = []
    if seconds == int(config.seconds):
        out.append(f"{seconds}s: peak {max(window)} mean {sum(window) / len(window):.1f}")
        window, seconds = [], 0
    return {"output": out, "state": {"window": window, "seconds": seconds}, "pull_request": ONE_SECOND}


run(summarize, initial_state={"window": [], "seconds": 0}, initial_pull_request=ONE_SECOND)
