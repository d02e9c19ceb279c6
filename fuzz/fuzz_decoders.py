#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris) of everything that decodes bytes from a peer: the
protocol decoder (headers, frames, Ticks/Results layouts) and the typed value decoders.

Contract under test: any input either decodes or raises the documented error
(ProtocolError, DecodeError); any other exception, a hang or a crash is a finding.

    python fuzz/fuzz_decoders.py fuzz/corpus -max_total_time=60      # .ci/run runs it briefly
    python fuzz/fuzz_decoders.py --make-corpus fuzz/corpus            # rewrite the seed corpus

Input layout (so the fuzzer can reach every decoder): byte 0 picks the target, byte 1 a
stream count or a type, the rest is split into frames at 0xFF 0x00 0xFF.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import msgpack

    from pipelogic import protocol as P
    from pipelogic.errors import ProtocolError
    from pipelogic.types import DecodeError
    from pipelogic.types._api import decode_frame

SEP = b"\xff\x00\xff"
TYPES = [
    "Int64",
    "Double",
    "String",
    "Bytes",
    "Bool",
    "[Int64]",
    "(Int64, String)",
    "Image",
    "Rectangle",
    "[BoundingBox]",
    "Maybe<Int64>",
    "{a: Int64, b: [String]}",
    "Tensor",
    "Int64 | String",
]


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    target, arg, rest = data[0] % 2, data[1], data[2:]
    frames = rest.split(SEP)
    if target == 0:
        try:
            msg, payload = P.decode(frames)
            layout = getattr(msg, "layout", None)
            if layout is not None:
                P.split_values(layout, payload, 1 + arg % 3)
        except ProtocolError:
            pass
    else:
        import pipelogic.cv  # noqa: F401 - registers the catalog types' classes

        try:
            decode_frame(frames[0], TYPES[arg % len(TYPES)], frames[1:])
        except DecodeError:
            pass


def make_corpus(folder: Path) -> None:
    """Seeds: real messages of every kind and real values of every type above."""
    from pipelogic.cv import Image
    from pipelogic.types._api import encode_frame

    folder.mkdir(parents=True, exist_ok=True)
    msgs = [
        P.Ticks(1, [[0, [[0]], None], [1, [[1]], None]]),
        P.Results(2, [[0, [[0]], None]], {"ticks": 1}),
        P.Hello("d", "i", 1, ["stateful"], 1, 1, None, "h", [["Int64"], ["Int64"]]),
        P.Heartbeat(1, {"ticks": 3}),
        P.Failed(1, 0, "boom", "Traceback", False),
        P.Ready(1, ["streaming"], None, 0),
        P.Sync(1, 5),
        P.ConfigSet("d", {"k": 1}, 100),
        P.StatusRequest(),
        P.Tap("d", 0, 0, 10),
        P.Close("finished"),
    ]
    n = 0
    for m in msgs:
        frames = P.encode(m, [msgpack.packb(7), b"buf"] if m.HAS_PAYLOAD else ())
        (folder / f"msg-{n:03}").write_bytes(bytes([0, 1]) + SEP.join(bytes(f) for f in frames))
        n += 1
    values = [
        (5, "Int64"),
        (1.5, "Double"),
        ("héllo", "String"),
        (b"\x00" * 100, "Bytes"),
        (True, "Bool"),
        ([1, 2, 3], "[Int64]"),
        ((1, "a"), "(Int64, String)"),
        (Image(width=2, height=1, format="GRAY", data=b"\x01\x02"), "Image"),
        ({"x": 0.0, "y": 0.0, "width": 1.0, "height": 2.0}, "Rectangle"),
    ]
    for value, t in values:
        frame, bufs = encode_frame(value, t)
        (folder / f"val-{n:03}").write_bytes(bytes([1, TYPES.index(t)]) + SEP.join([frame, *map(bytes, bufs)]))
        n += 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--make-corpus":
        make_corpus(Path(sys.argv[2]))
    else:
        atheris.Setup(sys.argv, one_input)
        atheris.Fuzz()
