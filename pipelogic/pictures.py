"""Pictures of stream values: the ``Image`` and ``DepthImage`` inside a decoded value as PNG
(or JPEG) files, scaled down, and the boxes (``BoundingBox``) a value carries.

Used by ``pipelogic tap --save`` and the broker's web view. PNG is written here with zlib
alone, so neither numpy nor Pillow is needed for it; JPEG needs Pillow (``pip install
'pipelogic[ui]'``). Scaling takes every n-th pixel of every n-th row (nearest neighbour):
cheap, and exact for what a viewer needs, a look at what the stream carries.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Box", "Picture", "boxes", "encode_jpeg", "encode_png", "have_jpeg", "pictures"]

_CHANNELS = {"RGB": 3, "BGR": 3, "GRAY": 1, "RGBA": 4, "BGRA": 4}
_IMAGE_KEYS = frozenset({"width", "height", "format", "data"})
_DEPTH_KEYS = frozenset({"width", "height", "scale", "data"})
_BOX_KEYS = frozenset({"class", "confidence", "rectangle"})
MAX_DEPTH = 8  # how deep into records, lists and tuples pictures and boxes are looked for
MAX_FOUND = 64  # at most this many boxes per value (a viewer needs no more)


@dataclass
class Picture:
    """A picture found in a value: ``path`` says where (``[0].image``); ``rgb`` is
    ``width * height * 3`` bytes (or ``gray``: one byte per pixel), already scaled."""

    path: str
    width: int  # of the picture as shown (scaled)
    height: int
    source_width: int  # of the value
    source_height: int
    pixels: bytes
    gray: bool
    kind: str  # "Image" or "DepthImage"


@dataclass
class Box:
    """A ``BoundingBox``: the rectangle in the pixels of its picture, the class and the
    confidence."""

    x: float
    y: float
    width: float
    height: float
    label: str
    confidence: float


def _walk(value: Any, path: str, depth: int) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every record inside ``value`` (itself included), with where it is."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, Mapping):
        yield path, value
        for k, v in value.items():
            if isinstance(v, (Mapping, list, tuple)):
                yield from _walk(v, f"{path}.{k}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value[:MAX_FOUND]):
            if isinstance(v, (Mapping, list, tuple)):
                yield from _walk(v, f"{path}[{i}]", depth + 1)


def pictures(value: Any, max_side: int = 0) -> list[Picture]:
    """The Images and DepthImages in ``value``, each scaled so neither side exceeds
    ``max_side`` (0: full size). A malformed one (its data shorter than its size says) is
    skipped, not guessed at."""
    out = []
    for path, rec in _walk(value, "", 0):
        keys = rec.keys()
        if _IMAGE_KEYS <= keys and rec.get("format") in _CHANNELS:
            pic = _image(path, rec, max_side)
        elif _DEPTH_KEYS <= keys:
            pic = _depth(path, rec, max_side)
        else:
            continue
        if pic is not None:
            out.append(pic)
    return out


def _step(width: int, height: int, max_side: int) -> int:
    longest = max(width, height)
    return 1 if max_side <= 0 or longest <= max_side else -(-longest // max_side)


def _image(path: str, rec: Mapping[str, Any], max_side: int) -> Picture | None:
    w, h, fmt, data = rec["width"], rec["height"], rec["format"], rec["data"]
    c = _CHANNELS[fmt]
    if not (isinstance(w, int) and isinstance(h, int)) or w <= 0 or h <= 0:
        return None
    buf = memoryview(data).cast("B")
    if len(buf) < w * h * c:
        return None
    n = _step(w, h, max_side)
    ow, oh = -(-w // n), -(-h // n)
    gray = c == 1
    out = bytearray(ow * oh * (1 if gray else 3))
    stride = w * c
    # Per row, slicing picks every n-th pixel of each channel in C: no per-pixel Python.
    order = (2, 1, 0) if fmt.startswith("BGR") else (0, 1, 2)
    row_out = ow * (1 if gray else 3)
    for y in range(oh):
        row = buf[y * n * stride : y * n * stride + stride]
        dst = memoryview(out)[y * row_out : (y + 1) * row_out]
        if gray:
            dst[:] = row[:: n * c]
        else:
            for i, ch in enumerate(order):
                dst[i::3] = row[ch :: n * c]
    return Picture(path or "value", ow, oh, w, h, bytes(out), gray, "Image")


def _depth(path: str, rec: Mapping[str, Any], max_side: int) -> Picture | None:
    """Depth (little-endian uint16) as gray: near bright, far dark, over the picture's range."""
    w, h, data = rec["width"], rec["height"], rec["data"]
    if not (isinstance(w, int) and isinstance(h, int)) or w <= 0 or h <= 0:
        return None
    buf = memoryview(data).cast("B")
    if len(buf) < w * h * 2:
        return None
    n = _step(w, h, max_side)
    ow, oh = -(-w // n), -(-h // n)
    samples: list[int] = []
    for y in range(oh):
        row = buf[y * n * w * 2 : (y * n + 1) * w * 2].cast("H")
        samples.extend(row[::n])
    valid = [s for s in samples if s]
    lo, hi = (min(valid), max(valid)) if valid else (0, 1)
    span = max(hi - lo, 1)
    pixels = bytes(0 if s == 0 else 255 - (s - lo) * 200 // span for s in samples)  # 0: no reading, black
    return Picture(path or "value", ow, oh, w, h, pixels, True, "DepthImage")


def boxes(value: Any) -> list[Box]:
    """The BoundingBoxes in ``value`` (at most MAX_FOUND)."""
    out = []
    for _, rec in _walk(value, "", 0):
        if not _BOX_KEYS <= rec.keys():
            continue
        r, cls = rec["rectangle"], rec["class"]
        try:
            box = Box(
                float(r["x"]),
                float(r["y"]),
                float(r["width"]),
                float(r["height"]),
                str(cls.get("name") or cls.get("id")) if isinstance(cls, Mapping) else str(cls),
                float(rec["confidence"]),
            )
        except (KeyError, TypeError, ValueError):
            continue
        out.append(box)
        if len(out) >= MAX_FOUND:
            break
    return out


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png(pic: Picture, level: int = 1) -> bytes:
    """``pic`` as a PNG file (8-bit RGB or gray, no filter: fast, and small enough)."""
    row = pic.width * (1 if pic.gray else 3)
    raw = bytearray()
    for y in range(pic.height):
        raw += b"\x00"
        raw += pic.pixels[y * row : (y + 1) * row]
    header = struct.pack(">IIBBBBB", pic.width, pic.height, 8, 0 if pic.gray else 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(raw), level))
        + _chunk(b"IEND", b"")
    )


def encode_jpeg(pic: Picture, quality: int = 80) -> bytes:
    """``pic`` as a JPEG file. Needs Pillow (``pip install 'pipelogic[ui]'``)."""
    try:
        from PIL import Image as PILImage
    except ImportError:
        raise ImportError("JPEG needs Pillow: pip install 'pipelogic[ui]' (or pillow); PNG needs nothing") from None
    img = PILImage.frombytes("L" if pic.gray else "RGB", (pic.width, pic.height), pic.pixels)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def have_jpeg() -> bool:
    """Whether JPEG can be written here (Pillow is installed)."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True
