"""A detector stand-in: for frame number n, n % 3 boxes and a tiny gray image."""

from pipelogic.cv import BoundingBox, DetectedClass, Image, Rectangle
from pipelogic.worker import run


def detect(n):
    boxes = [
        BoundingBox(DetectedClass(i, "thing"), 0.5 + i / 10, Rectangle(10.0 * i, 5.0, 20.0, 30.0)) for i in range(n % 3)
    ]
    image = Image(width=2, height=2, format="GRAY", data=bytes([n % 256] * 4))
    return boxes, image


run(detect)
