"""pipeline.yml: loading and type-checking a pipeline definition.

::

    name: demo
    components:
      numbers: {source: sequence, count: 1000}
      double:  {path: ./double, config: {factor: 3}}
      out:     {sink: jsonl, path: ./out/count.jsonl}
    connections:
      - numbers -> double
      - double -> out.0            # "vertex[.stream_index]", index defaults to 0

Every connection is type-checked on load (producer type assignable to consumer type, with
type variables unified per vertex). All problems are reported at once, each naming the
file and the key or edge.

Modules: :mod:`.model` (the parsed pipeline), :mod:`.vertices` (one vertex's entry),
:mod:`.parse` (the file as a whole, connections and their types, scale).
"""

from __future__ import annotations

from pipelogic.pipeline.model import SINKS, SOURCES, Pipeline, Port, Vertex
from pipelogic.pipeline.parse import (
    apply_scale,
    components_of,
    load_pipeline,
    parse_pipeline,
    parse_scale,
    source_problems,
)

__all__ = [
    "SINKS",
    "SOURCES",
    "Pipeline",
    "Port",
    "Vertex",
    "apply_scale",
    "components_of",
    "load_pipeline",
    "parse_pipeline",
    "parse_scale",
    "source_problems",
]
