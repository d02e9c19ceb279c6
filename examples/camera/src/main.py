"""A camera-like source: a thread grabs frames and pushes them through virtual_in."""

import threading
import time

from pipelogic.cv import Image
from pipelogic.worker import config, run, virtual_in


def camera() -> None:
    for n in range(int(config.frames)):
        pixels = bytes([n % 256]) * (8 * 6)
        virtual_in.push(Image(width=8, height=6, format="GRAY", data=pixels), blocking=False)
        time.sleep(0.002)  # a live source: frames arrive over time
    virtual_in.close()  # the camera is done: the source finishes once the queue drains


def from_camera(virtual_input):
    return virtual_input[0]


threading.Thread(target=camera, daemon=True).start()
run(from_camera)
