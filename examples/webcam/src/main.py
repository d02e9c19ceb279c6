"""A camera stand-in: a thread draws a bright square moving over a dark gradient, at
config.fps frames per second, and pushes each frame through virtual_in."""

import threading
import time

from pipelogic.cv import Image
from pipelogic.worker import config, run, virtual_in

SIDE = 40


def frame(n: int, w: int, h: int) -> bytes:
    row = bytes(v for x in range(w) for v in (x * 80 // w, 40, 90 - x * 60 // w))  # RGB gradient
    pixels = bytearray(row * h)
    x0 = (n * 7) % max(1, w - SIDE)
    y0 = (h - SIDE) // 2 + int((h // 4) * ((n // 10) % 2 * 2 - 1) * ((n % 10) / 10))
    for y in range(y0, y0 + SIDE):
        pixels[(y * w + x0) * 3 : (y * w + x0 + SIDE) * 3] = b"\xf0\xe0\x30" * SIDE
    return bytes(pixels)


def camera() -> None:
    n, w, h = 0, int(config.width), int(config.height)
    while not config.frames or n < int(config.frames):
        virtual_in.push(Image(width=w, height=h, format="RGB", data=frame(n, w, h)))
        n += 1
        time.sleep(1 / max(0.1, float(config.fps)))
    virtual_in.close()


def grab(virtual_input):
    return virtual_input[0]


threading.Thread(target=camera, daemon=True).start()
run(grab)
