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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelogic.component import ComponentSpec, check_config_value, load_component
from pipelogic.errors import DefinitionError, PipelogicError
from pipelogic.state import SnapshotPolicy
from pipelogic.types import Atomic, Type, Var, create_type, substitute, unify

__all__ = ["SINKS", "SOURCES", "Pipeline", "Port", "Vertex", "load_pipeline", "parse_pipeline"]

SOURCES = {"sequence", "values", "jsonl", "msgpack"}
SINKS = {"jsonl", "msgpack", "stdout", "null", "memory"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_ENDPOINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_-]*)(?:\.(\d+))?\s*$")


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
    on_error: str = "fail"
    snapshot: str | None = None  # the vertex's snapshot policy (normalised text), if set

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

    @property
    def directory(self) -> Path:
        return self.file.parent

    def path(self, p: str) -> Path:
        """A path from the pipeline file, relative to the file's directory."""
        q = Path(p)
        return q if q.is_absolute() else (self.directory / q)


def _source_type(v: Vertex, where: str, problems: list[str]) -> Type | None:
    kind = v.builtin
    p = v.params
    if kind == "sequence":
        for key in ("count", "start", "step"):
            if key in p and (type(p[key]) is not int):
                problems.append(f"{where}: components.{v.name}.{key}: expected an integer, got {p[key]!r}")
        if "count" in p and isinstance(p["count"], int) and p["count"] < 0:
            problems.append(f"{where}: components.{v.name}.count: must be >= 0, got {p['count']}")
        if "rate" in p and (not isinstance(p["rate"], (int, float)) or isinstance(p["rate"], bool) or p["rate"] <= 0):
            problems.append(f"{where}: components.{v.name}.rate: expected a positive number, got {p['rate']!r}")
        return Atomic("Int64")
    if "type" not in p:
        problems.append(f"{where}: components.{v.name}.type: a {kind} source needs the type of its values")
        return None
    try:
        t = create_type(str(p["type"]))
    except PipelogicError as exc:
        problems.append(f"{where}: components.{v.name}.type: {exc}")
        return None
    if kind == "values":
        if not isinstance(p.get("values"), list):
            problems.append(f"{where}: components.{v.name}.values: expected a list")
    elif not isinstance(p.get("path"), str):
        problems.append(f"{where}: components.{v.name}.path: a {kind} source needs a file path")
    return t


def _vertex(name: str, spec: Any, file: Path, where: str, problems: list[str]) -> Vertex | None:
    key = f"components.{name}"
    if not _NAME.match(str(name)):
        problems.append(f"{where}: {key}: vertex names are letters, digits, '_' and '-', got {name!r}")
        return None
    if not isinstance(spec, dict):
        problems.append(f"{where}: {key}: expected a mapping, got {spec!r}")
        return None
    kinds = [k for k in ("path", "source", "sink") if k in spec]
    if "sink" in spec or "source" in spec:
        kinds = [k for k in ("source", "sink") if k in spec]
    if len(kinds) != 1:
        problems.append(f"{where}: {key}: expected exactly one of path, source or sink")
        return None
    on_error = spec.get("on_error", "fail")
    if on_error not in ("fail", "skip"):
        problems.append(f"{where}: {key}.on_error: expected fail or skip, got {on_error!r}")
    snapshot = None
    if "snapshot" in spec:
        if kinds[0] != "path":
            problems.append(f"{where}: {key}.snapshot: only a component vertex has state to snapshot")
        else:
            try:
                snapshot = SnapshotPolicy.parse(spec["snapshot"], f"{key}.snapshot").to_text()
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
    if kinds[0] == "source":
        if spec["source"] not in SOURCES:
            problems.append(f"{where}: {key}.source: unknown source {spec['source']!r}; expected one of {', '.join(sorted(SOURCES))}")
            return None
        v = Vertex(name, "source", dict(spec))
        t = _source_type(v, where, problems)
        v.output_types = [t if t is not None else Var("a")]
        v.outputs = [[]]
        return v
    if kinds[0] == "sink":
        if spec["sink"] is None:  # YAML reads a bare `null` as None: that is the null sink
            spec = {**spec, "sink": "null"}
        if spec["sink"] not in SINKS:
            problems.append(f"{where}: {key}.sink: unknown sink {spec['sink']!r}; expected one of {', '.join(sorted(SINKS - {'memory'}))}")
            return None
        if spec["sink"] in ("jsonl", "msgpack") and not isinstance(spec.get("path"), str):
            problems.append(f"{where}: {key}.path: a {spec['sink']} sink needs a file path")
        v = Vertex(name, "sink", dict(spec), input_types=[Var("a")], inputs=[None])
        return v
    path = spec["path"]
    if not isinstance(path, str):
        problems.append(f"{where}: {key}.path: expected a directory path, got {path!r}")
        return None
    cdir = Path(path) if Path(path).is_absolute() else file.parent / path
    try:
        comp = load_component(cdir)
    except DefinitionError as exc:
        problems.extend(f"{where}: {key}.path: {p}" for p in exc.problems)
        return None
    v = Vertex(name, "component", dict(spec), component=comp, on_error=str(on_error), snapshot=snapshot)
    v.input_types = list(comp.input_types)
    v.output_types = list(comp.output_types)
    v.inputs = [None] * len(comp.input_types)
    v.outputs = [[] for _ in comp.output_types]
    cfg = spec.get("config") or {}
    if not isinstance(cfg, dict):
        problems.append(f"{where}: {key}.config: expected a mapping, got {cfg!r}")
        cfg = {}
    for k in cfg:
        if k not in comp.config_schema:
            known = ", ".join(comp.config_schema) or "none"
            problems.append(f"{where}: {key}.config.{k}: not in the config_schema of {comp.name} (known: {known})")
    for k, param in comp.config_schema.items():
        if k in cfg:
            try:
                v.config[k] = check_config_value(param, cfg[k])
            except PipelogicError as exc:
                problems.append(
                    f"{where}: {key}.config.{k}: declared type {param.type_text}, value {cfg[k]!r}: {exc}"
                )
        elif param.has_default:
            v.config[k] = param.default
        else:
            problems.append(
                f"{where}: {key}.config.{k}: no value and no default (declared type {param.type_text})"
            )
    return v


def parse_pipeline(data: Any, file: Path) -> Pipeline:
    """Check a loaded pipeline.yml mapping; raise DefinitionError listing every problem."""
    where = str(file)
    problems: list[str] = []
    if not isinstance(data, dict):
        raise DefinitionError(f"{where}: expected a mapping at the top level")
    name = data.get("name", file.parent.name)
    comps = data.get("components")
    if not isinstance(comps, dict) or not comps:
        raise DefinitionError(f"{where}: components: expected a non-empty mapping of vertices")
    vertices: dict[str, Vertex] = {}
    for vname, spec in comps.items():
        v = _vertex(str(vname), spec, file, where, problems)
        if v is not None:
            vertices[v.name] = v
    conns = data.get("connections") or []
    if not isinstance(conns, list):
        problems.append(f"{where}: connections: expected a list of 'a -> b' strings")
        conns = []
    edges: list[tuple[Port, Port, str]] = []
    for i, c in enumerate(conns):
        key = f"connections[{i}]"
        parts = c.split("->") if isinstance(c, str) else []
        if len(parts) != 2:
            problems.append(f"{where}: {key}: expected 'producer[.i] -> consumer[.j]', got {c!r}")
            continue
        ends = []
        for part in parts:
            m = _ENDPOINT.match(part)
            if m is None:
                problems.append(f"{where}: {key}: bad endpoint {part.strip()!r} in {c!r}")
                break
            ends.append(Port(m.group(1), int(m.group(2) or 0)))
        if len(ends) != 2:
            continue
        src, dst = ends
        ok = True
        for port, role in ((src, "producer"), (dst, "consumer")):
            if port.vertex not in comps:
                problems.append(f"{where}: {key}: unknown {role} vertex {port.vertex!r} in {c!r}")
                ok = False
        if not ok or src.vertex not in vertices or dst.vertex not in vertices:
            continue
        pv, cv = vertices[src.vertex], vertices[dst.vertex]
        if src.index >= len(pv.outputs):
            problems.append(f"{where}: {key}: {pv.name} has {len(pv.outputs)} output(s), no output {src.index} in {c!r}")
            continue
        if dst.index >= len(cv.inputs):
            problems.append(f"{where}: {key}: {cv.name} has {len(cv.inputs)} input(s), no input {dst.index} in {c!r}")
            continue
        if cv.inputs[dst.index] is not None:
            problems.append(f"{where}: {key}: input {dst} already has a producer ({cv.inputs[dst.index]}); an input has one producer")
            continue
        cv.inputs[dst.index] = src
        pv.outputs[src.index].append(dst)
        edges.append((src, dst, f"{key} ({c.strip()})"))
    for v in vertices.values():
        for j, p in enumerate(v.inputs):
            if p is None:
                problems.append(f"{where}: components.{v.name}: input {j} is not connected")
    order = _topological(vertices, where, problems)
    if not problems:
        _check_types(vertices, order, edges, where, problems)
    if problems:
        raise DefinitionError(problems)
    settings = data.get("settings") or {}
    if isinstance(settings, dict) and "snapshot" in settings:
        try:
            settings = {**settings, "snapshot": SnapshotPolicy.parse(settings["snapshot"], "settings.snapshot").to_text()}
        except ValueError as exc:
            raise DefinitionError([f"{where}: {exc}"]) from None
    return Pipeline(str(name), file, vertices, order, settings if isinstance(settings, dict) else {})


def _topological(vertices: dict[str, Vertex], where: str, problems: list[str]) -> list[str]:
    indeg = {n: sum(1 for p in v.inputs if p is not None) for n, v in vertices.items()}
    ready = [n for n, d in indeg.items() if d == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for consumers in vertices[n].outputs:
            for port in consumers:
                indeg[port.vertex] -= 1
                if indeg[port.vertex] == 0:
                    ready.append(port.vertex)
    if len(order) != len(vertices):
        cyc = sorted(set(vertices) - set(order))
        problems.append(f"{where}: connections: the pipeline has a cycle through {', '.join(cyc)}")
    return order


def _check_types(vertices: dict[str, Vertex], order: list[str], edges: list[tuple[Port, Port, str]], where: str, problems: list[str]) -> None:
    by_dst = {dst: (src, label) for src, dst, label in edges}
    for name in order:
        v = vertices[name]
        env: dict[str, Type] = {}
        v.wire_types = []
        for j, port in enumerate(v.inputs):
            assert port is not None
            src, label = by_dst[Port(name, j)]
            produced = vertices[src.vertex].output_types[src.index]
            wanted = substitute(v.input_types[j], env)
            try:
                _, bindings = unify(produced, wanted)
            except PipelogicError as exc:
                problems.append(
                    f"{where}: {label}: {src} produces {produced} but {name}.{j} expects "
                    f"{v.input_types[j]}: {exc}"
                )
                v.wire_types.append(produced)
                continue
            env.update(bindings)
            v.wire_types.append(produced)
        v.input_types = [substitute(t, env) for t in v.input_types]
        v.output_types = [substitute(t, env) for t in v.output_types]


def load_pipeline(path: str | Path) -> Pipeline:
    """Load and type-check a pipeline.yml."""
    file = Path(path)
    if file.is_dir():
        file = file / "pipeline.yml"
    if not file.exists():
        raise DefinitionError(f"{file}: no such pipeline file")
    try:
        data = yaml.safe_load(file.read_text("utf-8"))
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{file}: not valid YAML: {exc}") from None
    return parse_pipeline(data, file.resolve())
