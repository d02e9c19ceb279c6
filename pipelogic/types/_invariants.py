"""Rules of catalog types beyond their shape, checked wherever a value is validated,
encoded or decoded: an ``Image`` whose ``data`` is not ``width x height x channels`` bytes
would otherwise crash (or silently misread) whatever consumes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["INVARIANTS"]

_CHANNELS = {"GRAY": 1, "RGB": 3, "BGR": 3, "RGBA": 4, "BGRA": 4}


def _field(v: Any, name: str) -> Any:
    return v.get(name) if isinstance(v, dict) else getattr(v, name, None)


def _pixels(bytes_per_pixel: Callable[[Any], int | None]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        width, height, data = _field(v, "width"), _field(v, "height"), _field(v, "data")
        per = bytes_per_pixel(v)
        if not (isinstance(width, int) and isinstance(height, int) and per is not None):
            return None  # the shape check reports what is missing
        try:
            size = len(data) if not isinstance(data, memoryview) else data.nbytes
        except TypeError:
            return None
        want = width * height * per
        if size != want:
            return f"data of {size} bytes for {width} x {height} pixels of {per} byte(s) ({want} expected)"
        return None

    return check


INVARIANTS: dict[str, Callable[[Any], str | None]] = {
    "Image": _pixels(lambda v: _CHANNELS.get(str(_field(v, "format")))),
    "DepthImage": _pixels(lambda v: 2),
}
