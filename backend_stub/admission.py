"""Admission checks on a worker's Hello that are about what it is, not where it is."""

from __future__ import annotations

from typing import Any

from backend_stub.model import VertexState
from pipelogic.errors import PipelogicError
from pipelogic.types import create_type

__all__ = ["declared_types_differ"]


def declared_types_differ(vs: VertexState, types: list[Any] | None) -> str:
    """Why a worker's declared stream types are not its vertex's component's, or "".
    A worker started for the wrong vertex (PIPELOGIC_COMPONENT), or from another version of
    the component than the broker loaded, would otherwise fail later and obscurely."""
    comp = vs.v.component
    if types is None or comp is None:
        return ""
    if (len(types) != 2 or not all(isinstance(side, list) for side in types)
            or not all(isinstance(t, str) for side in types for t in side)):
        return f"the worker's declared types are malformed: {types!r:.200}"
    try:
        got = [[str(create_type(t)) for t in side] for side in types]
    except PipelogicError as exc:
        return f"the worker declares a type the broker cannot read: {exc}"
    want = [[str(t) for t in comp.input_types], [str(t) for t in comp.output_types]]
    if got == want:
        return ""

    def show(sides: list[list[str]]) -> str:
        return f"inputs ({', '.join(sides[0])}) -> outputs ({', '.join(sides[1])})"

    return (f"the worker's component.yml declares {show(got)}, but this vertex's component "
            f"({comp.file}) declares {show(want)}; is PIPELOGIC_COMPONENT the right vertex, "
            "and is the worker running the same version of the component?")
