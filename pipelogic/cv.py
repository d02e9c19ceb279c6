"""Typed wrappers for the catalog types that a worker can return directly.

Each class is a :class:`~pipelogic.types.Record` pinned to its catalog type: construct it
with positional or keyword fields (validated at once), read fields as attributes
(``box.rectangle.x``; ``box.class_`` for the field named ``class``). Values of these types
arriving on an input decode to these classes.

``Image.from_numpy(arr, format="BGR")`` and ``image.to_numpy()`` share memory with the
array where possible; they need numpy (``pip install 'pipelogic[numpy]'``).
"""

from __future__ import annotations

from typing import Any

from pipelogic.types import Named, Record
from pipelogic.types._codec import codec_for, register_class
from pipelogic.types._registry import lookup

__all__ = [
    "AudioFrame",
    "BoundingBox",
    "DepthImage",
    "DetectedClass",
    "Ellipse",
    "Embedding",
    "Image",
    "Landmark",
    "Mask",
    "Point",
    "Polygon",
    "Rectangle",
    "Tensor",
    "VideoFrame",
]

_CHANNELS = {"RGB": 3, "BGR": 3, "GRAY": 1, "RGBA": 4, "BGRA": 4}


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise ImportError("numpy is needed for this: install the extra with pip install 'pipelogic[numpy]'") from None
    return numpy


class _CatalogRecord(Record):
    _type_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _, body = lookup(self._type_name)
        names = [k for k, _ in body.fields]  # type: ignore[union-attr]
        if len(args) > len(names):
            raise TypeError(f"{self._type_name} takes {len(names)} fields, got {len(args)}")
        data = dict(zip(names, args))
        for k, v in kwargs.items():
            key = k[:-1] if k.endswith("_") and k[:-1] in names else k
            if key in data:
                raise TypeError(f"{self._type_name} got field {key!r} twice")
            data[key] = v
        t = Named(self._type_name)
        checked = codec_for(t).check(data)
        dict.__init__(self, checked)


def _make(name: str, doc: str) -> type[_CatalogRecord]:
    cls = type(name, (_CatalogRecord,), {"_type_name": name, "__doc__": doc, "__slots__": ()})
    cls.__pipelang_type__ = Named(name)  # type: ignore[attr-defined]
    cls.__module__ = __name__
    register_class(name, cls)
    return cls


class Image(_CatalogRecord):
    """``Image(width, height, format, data)``: 8-bit pixels, rows top to bottom, interleaved."""

    _type_name = "Image"
    __pipelang_type__ = Named("Image")

    @classmethod
    def from_numpy(cls, array: Any, format: str = "BGR") -> Image:  # noqa: A002
        """Wrap a ``(h, w)`` or ``(h, w, c)`` uint8 array; no copy if it is C-contiguous."""
        np = _numpy()
        arr = np.asarray(array)
        if arr.dtype != np.uint8:
            raise ValueError(f"Image.from_numpy expects dtype uint8, got {arr.dtype}")
        channels = _CHANNELS.get(format)
        if channels is None:
            raise ValueError(f"unknown image format {format!r}; expected one of {list(_CHANNELS)}")
        shape = arr.shape
        if arr.ndim == 2 and channels == 1:
            h, w = shape
        elif arr.ndim == 3 and shape[2] == channels:
            h, w = shape[0], shape[1]
        else:
            raise ValueError(f"array of shape {shape} does not fit format {format}")
        arr = np.ascontiguousarray(arr)
        return cls(width=w, height=h, format=format, data=memoryview(arr).cast("B"))

    def to_numpy(self) -> Any:
        """A ``(h, w, c)`` (or ``(h, w)`` for GRAY) uint8 view of the pixels (read-only)."""
        np = _numpy()
        c = _CHANNELS[self["format"]]
        arr = np.frombuffer(self["data"], dtype=np.uint8)
        shape = (self["height"], self["width"]) if c == 1 else (self["height"], self["width"], c)
        return arr.reshape(shape)


register_class("Image", Image)

VideoFrame = _make("VideoFrame", "``VideoFrame(image, timestamp)``: an Image and its time in microseconds.")
DepthImage = _make("DepthImage", "A depth map: little-endian uint16 per pixel, scale in metres.")
Point = _make("Point", "``Point(x, y)``.")
Rectangle = _make("Rectangle", "``Rectangle(x, y, width, height)``.")
Ellipse = _make("Ellipse", "``Ellipse(center, axes, angle)``.")
Polygon = _make("Polygon", "``Polygon(points)``.")
DetectedClass = _make("DetectedClass", "``DetectedClass(id, name)``.")
BoundingBox = _make("BoundingBox", "``BoundingBox(class_, confidence, rectangle)``.")
Landmark = _make("Landmark", "``Landmark(point, visibility)``.")
Mask = _make("Mask", "``Mask(width, height, data)``: one byte per pixel.")
Tensor = _make("Tensor", "``Tensor(shape, element_type, data)``: row-major, little-endian.")
Embedding = _make("Embedding", "``Embedding(vector)``.")
AudioFrame = _make("AudioFrame", "``AudioFrame(sample_rate, channels, samples)``.")
