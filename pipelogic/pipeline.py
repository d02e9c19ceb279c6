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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipelogic._yamlfile import Problems, load_yaml, near
from pipelogic.component import (
    ComponentSpec,
    check_config_total,
    check_config_value,
    check_sources,
    load_component,
    not_a_name,
    parse_type,
)
from pipelogic.datapaths import check_data_paths
from pipelogic.errors import DefinitionError, PipelogicError
from pipelogic.files import bind_files
from pipelogic.limits import preview
from pipelogic.state import SnapshotPolicy
from pipelogic.types import Atomic, Named, Type, Var, substitute, unify

__all__ = [
    "SINKS",
    "SOURCES",
    "Pipeline",
    "Port",
    "Vertex",
    "apply_scale",
    "load_pipeline",
    "parse_pipeline",
    "parse_scale",
    "source_problems",
]

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
    on_error: Literal["fail", "skip"] = "fail"
    snapshot: str | None = None  # the vertex's snapshot policy (normalised text), if set
    replicas: int = 1  # worker instances the vertex runs as (docs/semantics.md, "Replicas")

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
COMPONENT_KEYS = ("path", "config", "on_error", "snapshot", "dead_letter", "files", "replicas")


def _source_type(v: Vertex, problems: Problems) -> Type | None:
    kind = v.builtin
    p = v.params
    key = ["components", v.name]
    if kind == "sequence":
        for k in ("count", "start", "step"):
            if k in p and (type(p[k]) is not int):
                problems.add([*key, k], f"expected an integer, got {p[k]!r}", value=True)
        if "count" in p and isinstance(p["count"], int) and p["count"] < 0:
            problems.add([*key, "count"], f"must be >= 0, got {p['count']}", value=True)
        if "rate" in p and (not isinstance(p["rate"], (int, float)) or isinstance(p["rate"], bool) or p["rate"] <= 0):
            problems.add([*key, "rate"], f"expected a positive number, got {p['rate']!r}", value=True)
        return Atomic("Int64")
    if "rate" in p and (not isinstance(p["rate"], (int, float)) or isinstance(p["rate"], bool) or p["rate"] <= 0):
        problems.add([*key, "rate"], f"expected a positive number, got {p['rate']!r}", value=True)
    if "type" not in p:
        problems.add([*key], f"type: a {kind} source needs the type of its values")
        return None
    t = parse_type(str(p["type"]), [*key, "type"], problems)
    if t is None:
        return None
    if kind == "values":
        if not isinstance(p.get("values"), list):
            problems.add([*key, "values"], "expected a list", value=True)
        else:
            from pipelogic.jsonform import from_json

            for i, x in enumerate(p["values"]):  # read as a jsonl line is: Bytes as base64
                try:
                    from_json(x, t)
                except PipelogicError as exc:
                    problems.add([*key, "values", i], str(exc), value=True)
    elif not isinstance(p.get("path"), str):
        problems.add([*key, "path"], f"a {kind} source needs a file path", value="path" in p)
    return t


def _vertex(name: str, spec: Any, file: Path, problems: Problems) -> Vertex | None:
    key: list[Any] = ["components", name]
    if not _NAME.match(str(name)):
        hint = " (a key needs a space after its ':': `name: {...}`)" if ":" in str(name) else ""
        problems.add(key, f"vertex names are letters, digits, '_' and '-', got {name!r}{hint}")
        return None
    if not isinstance(spec, dict):
        problems.add(key, f"expected a mapping, got {spec!r}", value=True)
        return None
    if "source" not in spec and "sink" not in spec:
        # `snk: jsonl` reads as a component (its `path:` then a missing folder): say what was meant.
        for k in spec:
            hint = near(str(k), ("source", "sink"))
            if hint and k not in COMPONENT_KEYS:
                problems.add([*key, k], f"unknown key {k!r}{hint}")
                return None
    kinds = [k for k in ("path", "source", "sink") if k in spec]
    if "sink" in spec or "source" in spec:
        kinds = [k for k in ("source", "sink") if k in spec]
    if len(kinds) != 1:
        hint = ""
        for k in spec:
            hint = hint or near(k, ("path", "source", "sink"))
        problems.add(key, f"expected exactly one of path, source or sink{hint}", value=True)
        return None
    on_error = spec.get("on_error", "fail")
    if on_error not in ("fail", "skip"):
        problems.add([*key, "on_error"], f"expected fail or skip, got {on_error!r}", value=True)
    snapshot = None
    if "snapshot" in spec and kinds[0] == "path":
        try:
            snapshot = SnapshotPolicy.parse(spec["snapshot"], "snapshot").to_text()
        except ValueError as exc:
            problems.add([*key, "snapshot"], str(exc).removeprefix("snapshot: "), value=True)
    if kinds[0] == "source":
        if spec["source"] not in SOURCES:
            problems.add(
                [*key, "source"],
                f"unknown source {spec['source']!r}{near(spec['source'], SOURCES)} "
                f"(the sources are {', '.join(sorted(SOURCES))})",
                value=True,
            )
            return None
        problems.unknown_keys(spec, _SOURCE_KEYS[spec["source"]], key, f"a {spec['source']} source")
        v = Vertex(name, "source", dict(spec))
        t = _source_type(v, problems)
        v.output_types = [t if t is not None else Var("a")]
        v.outputs = [[]]
        return v
    if kinds[0] == "sink":
        if spec["sink"] is None:  # YAML reads a bare `null` as None: that is the null sink
            spec = {**spec, "sink": "null"}
        if spec["sink"] not in SINKS:
            shown = sorted(SINKS - {"memory"})
            problems.add(
                [*key, "sink"],
                f"unknown sink {spec['sink']!r}{near(spec['sink'], shown)} (the sinks are {', '.join(shown)})",
                value=True,
            )
            return None
        problems.unknown_keys(spec, _SINK_KEYS[spec["sink"]], key, f"a {spec['sink']} sink")
        if spec["sink"] in ("jsonl", "msgpack") and not isinstance(spec.get("path"), str):
            problems.add([*key, "path"], f"a {spec['sink']} sink needs a file path", value="path" in spec)
        v = Vertex(name, "sink", dict(spec), input_types=[Var("a")], inputs=[None])
        return v
    problems.unknown_keys(spec, COMPONENT_KEYS, key, "a component vertex")
    if "dead_letter" in spec and not isinstance(spec["dead_letter"], str):
        problems.add([*key, "dead_letter"], f"expected a file path, got {spec['dead_letter']!r}", value=True)
    path = spec["path"]
    if not isinstance(path, str):
        problems.add([*key, "path"], f"expected a directory path, got {path!r}", value=True)
        return None
    cdir = Path(path) if Path(path).is_absolute() else file.parent / path
    if not cdir.is_dir():
        problems.add([*key, "path"], f"{cdir}: no such component directory", value=True)
        return None
    try:
        comp = load_component(cdir)
    except DefinitionError as exc:
        # The component file's own positions say where to look; say which vertex uses it.
        problems.extend(exc.problems)
        return None
    replicas = spec.get("replicas", 1)
    if type(replicas) is not int or replicas < 1:
        problems.add([*key, "replicas"], f"expected an integer >= 1 (worker instances), got {replicas!r}", value=True)
        replicas = 1
    v = Vertex(
        name,
        "component",
        dict(spec),
        component=comp,
        on_error="skip" if on_error == "skip" else "fail",
        snapshot=snapshot,
        replicas=replicas,
    )
    v.input_types = list(comp.input_types)
    v.output_types = list(comp.output_types)
    v.inputs = [None] * len(comp.input_types)
    v.outputs = [[] for _ in comp.output_types]
    cfg = spec.get("config") or {}
    if not isinstance(cfg, dict):
        problems.add([*key, "config"], f"expected a mapping, got {cfg!r}", value=True)
        cfg = {}
    for k in list(cfg):
        if not isinstance(k, str):
            problems.add([*key, "config", k], not_a_name(k))
            continue
        if k not in comp.config_schema:
            known = ", ".join(comp.config_schema) or "none"
            problems.add(
                [*key, "config", k],
                f"not in the config_schema of {comp.name}{near(k, comp.config_schema)} (known: {known})",
            )
    v.config.update(bind_files(comp.file_slots, spec.get("files"), cfg, key, comp.name, file.parent, name, problems))
    for k, param in comp.config_schema.items():
        if param.slot is not None:
            continue  # a file's path: bound above
        if k in cfg:
            try:
                v.config[k] = check_config_value(param, cfg[k])
            except PipelogicError as exc:
                problems.add(
                    [*key, "config", k], f"declared type {param.type_text}, value {preview(cfg[k])}: {exc}", value=True
                )
        elif param.has_default:
            v.config[k] = param.default
        else:
            problems.add([*key, "config", k], f"no value and no default (declared type {param.type_text})")
    too_large = check_config_total(comp.config_schema, v.config)
    if too_large:
        problems.add([*key, "config"], too_large)
    return v


def _settings(data: Any, problems: Problems) -> dict[str, Any]:
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        problems.add(["settings"], f"expected a mapping, got {settings!r}", value=True)
        return {}
    problems.unknown_keys(settings, SETTINGS_KEYS, ["settings"], "settings")
    out: dict[str, Any] = {}
    for k, v in settings.items():
        if k == "snapshot":
            try:
                out[k] = SnapshotPolicy.parse(v, "snapshot").to_text()
            except ValueError as exc:
                problems.add(["settings", k], str(exc).removeprefix("snapshot: "), value=True)
        elif k == "redelivery":  # true or false (1 or 0 also read)
            if type(v) is bool or (type(v) is int and v in (0, 1)):
                out[k] = bool(v)
            else:
                problems.add(["settings", k], f"expected true or false, got {v!r}", value=True)
        elif k in SETTINGS_KEYS:
            if type(v) is not int or v < 1:
                problems.add(["settings", k], f"expected an integer >= 1, got {v!r}", value=True)
            else:
                out[k] = v
    return out


def parse_pipeline(data: Any, file: Path) -> Pipeline:
    """Check a loaded pipeline.yml mapping; raise DefinitionError listing every problem."""
    problems = Problems(file, data)
    if not isinstance(data, dict):
        raise DefinitionError(f"{file}: expected a mapping at the top level, got {type(data).__name__}")
    problems.unknown_keys(data, TOP_KEYS, [], "pipeline.yml")
    name = data.get("name", file.parent.name)
    comps = data.get("components")
    if not isinstance(comps, dict) or not comps:
        problems.add(["components"], "expected a non-empty mapping of vertices", value="components" in data)
        raise DefinitionError(problems.items)
    vertices: dict[str, Vertex] = {}
    for vname, spec in comps.items():
        if not isinstance(vname, str):
            problems.add(["components", vname], f"vertex {not_a_name(vname)}")
            continue
        v = _vertex(vname, spec, file, problems)
        if v is not None:
            vertices[v.name] = v
    # A vertex that did not load has no known ports: edges touching it are skipped, and
    # its consumers' inputs are not reported as unconnected on top of its own problem
    # (nor are inputs named by an edge that has an error of its own).
    broken = {str(n) for n in comps} - set(vertices)
    fed_by_broken: set[Port] = set()
    conns = data.get("connections") or []
    if not isinstance(conns, list):
        problems.add(["connections"], "expected a list of 'a -> b' strings", value=True)
        conns = []
    edges: list[tuple[Port, Port, int, str]] = []
    for i, c in enumerate(conns):
        key = ["connections", i]
        parts = c.split("->") if isinstance(c, str) else []
        if len(parts) != 2:
            problems.add(key, f"expected 'producer[.i] -> consumer[.j]', got {c!r}", value=True)
            continue
        ends = []
        for part in parts:
            m = _ENDPOINT.match(part)
            if m is None:
                problems.add(key, f"bad endpoint {part.strip()!r} in {c!r}", value=True)
                break
            ends.append(Port(m.group(1), int(m.group(2) or 0)))
        if len(ends) != 2:
            continue
        src, dst = ends
        # Named as a consumer: if this edge is wrong, its own error says so, and the input
        # is not reported as unconnected on top of it.
        fed_by_broken.add(dst)
        ok = True
        for port, role in ((src, "producer"), (dst, "consumer")):
            if port.vertex not in comps:
                problems.add(
                    key,
                    f"unknown {role} vertex {port.vertex!r} in {c!r}{near(port.vertex, map(str, comps))}",
                    value=True,
                )
                ok = False
        if not ok:
            continue
        if src.vertex in broken or dst.vertex in broken:
            continue
        pv, cv = vertices[src.vertex], vertices[dst.vertex]
        if src.index >= len(pv.outputs):
            problems.add(key, f"{pv.name} has {len(pv.outputs)} output(s), no output {src.index} in {c!r}", value=True)
            continue
        if dst.index >= len(cv.inputs):
            problems.add(key, f"{cv.name} has {len(cv.inputs)} input(s), no input {dst.index} in {c!r}", value=True)
            continue
        if cv.inputs[dst.index] is not None:
            problems.add(
                key,
                f"input {dst} already has a producer ({cv.inputs[dst.index]}); an input has one producer",
                value=True,
            )
            continue
        cv.inputs[dst.index] = src
        pv.outputs[src.index].append(dst)
        edges.append((src, dst, i, c.strip()))
    # With `connections` misspelt, every input is unconnected: the typo is the one problem.
    misspelt = "connections" not in data and any(near(k, ["connections"]) for k in data if k not in TOP_KEYS)
    for v in vertices.values():
        for j, p in enumerate(v.inputs):
            if p is None and Port(v.name, j) not in fed_by_broken and not misspelt:
                problems.add(["components", v.name], f"input {j} ({v.input_types[j]}) is not connected")
    settings = _settings(data, problems)
    outside = check_data_paths(data, file, vertices, problems)
    if problems:
        problems.raise_if_any()
    order = _topological(vertices, problems)
    if not problems:
        _check_types(vertices, order, edges, problems)
    problems.raise_if_any()
    return Pipeline(str(name), file, vertices, order, settings, outside)


def parse_scale(items: Iterable[str]) -> dict[str, int]:
    """``VERTEX=N`` options (``--scale``) as a mapping; ValueError says which one is wrong."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, n = item.partition("=")
        if not sep or not name or not n.strip().isdigit() or int(n) < 1:
            raise ValueError(f"--scale: expected VERTEX=N with N >= 1, got {item!r}")
        out[name.strip()] = int(n)
    return out


def apply_scale(p: Pipeline, scale: dict[str, int]) -> None:
    """Set the replicas of component vertices (``--scale`` overrides pipeline.yml);
    DefinitionError names a vertex that is not a component of ``p``."""
    for name, n in scale.items():
        v = p.vertices.get(name)
        if v is None or v.kind != "component":
            comps = ", ".join(k for k, x in p.vertices.items() if x.kind == "component")
            raise DefinitionError(
                f"--scale {name}={n}: {name!r} is not a component vertex of {p.file} (its components: {comps})"
            )
        v.replicas = n


def components_of(p: Pipeline) -> list[ComponentSpec]:
    """The components the pipeline uses, once per directory, in directory order."""
    found = {v.component.directory: v.component for v in p.vertices.values() if v.component is not None}
    return [found[d] for d in sorted(found)]


def source_problems(p: Pipeline) -> list[str]:
    """``check_sources`` for each component the pipeline uses, once per directory."""
    return [problem for c in components_of(p) for problem in check_sources(c)]


def _topological(vertices: dict[str, Vertex], problems: Problems) -> list[str]:
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
        problems.add(["connections"], f"the pipeline has a cycle through {', '.join(cyc)}")
    return order


def _check_types(
    vertices: dict[str, Vertex], order: list[str], edges: list[tuple[Port, Port, int, str]], problems: Problems
) -> None:
    by_dst = {dst: (src, i, text) for src, dst, i, text in edges}
    for name in order:
        v = vertices[name]
        env: dict[str, Type] = {}
        v.wire_types = []
        for j, port in enumerate(v.inputs):
            assert port is not None
            src, index, text = by_dst[Port(name, j)]
            produced = vertices[src.vertex].output_types[src.index]
            wanted = substitute(v.input_types[j], env)
            try:
                try:
                    _, bindings = unify(produced, wanted)
                except PipelogicError:
                    if not (isinstance(produced, Named) and produced.name == "Maybe" and len(produced.args) == 1):
                        raise
                    # The platform's unpack adapter: Nothing is dropped before the consumer.
                    _, bindings = unify(produced.args[0], wanted)
            except PipelogicError as exc:
                problems.add(
                    ["connections", index],
                    f"{text}: {src} produces {produced} but {name}.{j} expects {v.input_types[j]}: {exc}",
                    value=True,
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
    return parse_pipeline(load_yaml(file), file.resolve())
