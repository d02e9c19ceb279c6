from pipelogic.worker import run


def double(x):
    return x * 2


run(double)
