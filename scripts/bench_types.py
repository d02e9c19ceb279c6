"""Encode+decode cost of typed values, as a ratio against plain msgpack of the same data,
measured in the same run. Usage: python scripts/bench_types.py [--quick]"""

from __future__ import annotations

import sys
import timeit
from typing import Any

import msgpack

import pipelogic.cv  # noqa: F401 - decoded Images become cv classes, as in a worker
from pipelogic.types import create_type, decode_frame, encode_frame

SMALL_T = create_type("{id: Int64, label: String, score: Double, box: (Double, Double, Double, Double)}")
SMALL: dict[str, Any] = {"id": 42, "label": "person", "score": 0.93, "box": (10.0, 20.0, 30.0, 40.0)}
IMAGE_T = create_type("Image")
IMAGE = {"width": 1920, "height": 1080, "format": "BGR", "data": bytearray(1920 * 1080 * 3)}


def typed(value, t):
    frame, bufs = encode_frame(value, t)
    decode_frame(frame, t, bufs)


def plain(value):
    msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)


def measure(fn, number: int, repeat: int = 5) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main() -> None:
    quick = "--quick" in sys.argv
    n_small, n_image = (2_000, 20) if quick else (50_000, 200)
    small_plain = {**SMALL, "box": list(SMALL["box"])}
    rows = [
        ("small record", measure(lambda: typed(SMALL, SMALL_T), n_small), measure(lambda: plain(small_plain), n_small)),
        ("6 MB Image", measure(lambda: typed(IMAGE, IMAGE_T), n_image), measure(lambda: plain(IMAGE), n_image)),
    ]
    print(f"{'value':<14} {'pipelogic':>12} {'plain msgpack':>14} {'ratio':>7}")
    for name, ours, base in rows:
        print(f"{name:<14} {ours * 1e6:>10.2f}us {base * 1e6:>12.2f}us {ours / base:>7.2f}")


if __name__ == "__main__":
    main()
