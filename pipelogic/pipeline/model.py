"""A parsed pipeline: its vertices, their ports, and the keys pipeline.yml takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipelogic.component import (
    ComponentSpec,
)
from pipelogic.types import Type

__all__ = [
    "COMPONENT_KEYS",
    "FLOW_KEYS",
    "SETTINGS_KEYS",
    "VIRTUAL_QUEUE_KEYS",
    "SINKS",
    "SOURCES",
    "TOP_KEYS",
    "Pipeline",
    "Port",
    "Vertex",
]

SOURCES = {"sequence", "values", "jsonl", "msgpack"}
SINKS = {"jsonl", "msgpack", "stdout", "null", "memory"}


@dataclass(frozen=True)
class Port:
    vertex: str
    index: int

    def __str__(self) -> str:
        return f"{self.vertex}.{self.index}"


@dataclass
class Vertex:
    """One vertex: a component, a built-in source or a built-in sink."""

    name: str
    kind: str  # "component" | "source" | "sink"
    params: dict[str, Any]
    component: ComponentSpec | None = None
    config: dict[str, Any] = field(default_factory=dict)
    input_types: list[Type] = field(default_factory=list)
    output_types: list[Type] = field(default_factory=list)
    wire_types: list[Type] = field(default_factory=list)
    inputs: list[Port | None] = field(default_factory=list)
    outputs: list[list[Port]] = field(default_factory=list)
    on_error: Literal["fail", "skip"] = "fail"
    snapshot: str | None = None  # the vertex's snapshot policy (normalised text), if set
    replicas: int = 1  # worker instances the vertex runs as (docs/semantics.md, "Replicas")
    flow: dict[str, int] = field(default_factory=dict)  # its own FLOW_KEYS settings
    virtual_queue: dict[str, Any] = field(default_factory=dict)  # size, bytes, keep ("all" | "latest")

    @property
    def builtin(self) -> str:
        return str(self.params.get(self.kind, "")) if self.kind != "component" else ""


@dataclass
class Pipeline:
    name: str
    file: Path
    vertices: dict[str, Vertex]
    order: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    outside: list[Path] = field(default_factory=list)  # allow_paths_outside, resolved

    @property
    def directory(self) -> Path:
        return self.file.parent

    def path(self, p: str) -> Path:
        """A path from the pipeline file, relative to the file's directory."""
        q = Path(p)
        return q if q.is_absolute() else (self.directory / q)


# The keys each kind of vertex takes; anything else is an error with a hint.
TOP_KEYS = ("name", "components", "connections", "settings", "allow_paths_outside")
SETTINGS_KEYS = (
    "buffer_capacity",
    "buffer_bytes",
    "credit",
    "batch",
    "inflight_bytes",
    "heartbeat_ms",
    "liveness",
    "redelivery",
    "snapshot",
)
_SOURCE_KEYS = {
    "sequence": ("source", "count", "start", "step", "rate"),
    "values": ("source", "type", "values", "rate"),
    "jsonl": ("source", "type", "path", "rate"),
    "msgpack": ("source", "type", "path", "rate"),
}
_SINK_KEYS = {
    "jsonl": ("sink", "path"),
    "msgpack": ("sink", "path"),
    "stdout": ("sink",),
    "null": ("sink",),
    "memory": ("sink",),
}
# A component vertex's own flow settings (each overrides the pipeline's `settings:` for it):
# its worker's credit, batch and bytes in flight; its input buffers' bounds.
FLOW_KEYS = ("credit", "batch", "inflight_bytes", "buffer_capacity", "buffer_bytes")
# The worker's virtual input queue (`virtual_in`): its bounds and what a full one drops.
VIRTUAL_QUEUE_KEYS = ("size", "bytes", "keep")
COMPONENT_KEYS = (
    "path",
    "config",
    "on_error",
    "snapshot",
    "dead_letter",
    "files",
    "replicas",
    *FLOW_KEYS,
    "virtual_queue",
)
