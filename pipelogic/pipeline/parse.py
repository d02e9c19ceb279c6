"""pipeline.yml as a whole: settings, vertices, connections (type-checked), scale."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipelogic._yamlfile import Problems, load_yaml, near
from pipelogic.component import (
    ComponentSpec,
    check_sources,
    not_a_name,
)
from pipelogic.datapaths import check_data_paths
from pipelogic.errors import DefinitionError, PipelogicError
from pipelogic.pipeline.model import SETTINGS_KEYS, TOP_KEYS, Pipeline, Port, Vertex
from pipelogic.pipeline.vertices import parse_vertex
from pipelogic.state import SnapshotPolicy
from pipelogic.types import Named, Type, substitute, unify

__all__ = ["apply_scale", "components_of", "load_pipeline", "parse_pipeline", "parse_scale", "source_problems"]

_ENDPOINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_-]*)(?:\.(\d+))?\s*$")


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
        v = parse_vertex(vname, spec, file, problems)
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
