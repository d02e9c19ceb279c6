from pipelogic.worker import run


def positive(x):
    # Refuses what it cannot handle; with `on_error: skip` in pipeline.yml such a tick is
    # skipped and its input goes to the dead-letter file instead of failing the run.
    if x < 0:
        raise ValueError(f"expected a positive number, got {x}")
    return x


run(positive)
