"""One entry of ``components:`` in pipeline.yml: a built-in source or sink, or a component
(its folder, config, files, replicas, ...), checked key by key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipelogic._yamlfile import Problems, near
from pipelogic.component import (
    check_config_total,
    check_config_value,
    load_component,
    not_a_name,
    parse_type,
)
from pipelogic.errors import DefinitionError, PipelogicError
from pipelogic.files import bind_files
from pipelogic.limits import preview
from pipelogic.pipeline.model import (
    _SINK_KEYS,
    _SOURCE_KEYS,
    COMPONENT_KEYS,
    FLOW_KEYS,
    SINKS,
    SOURCES,
    VIRTUAL_QUEUE_KEYS,
    Vertex,
)
from pipelogic.state import SnapshotPolicy
from pipelogic.types import Atomic, Type, Var

__all__ = ["parse_vertex"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


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


def parse_vertex(name: str, spec: Any, file: Path, problems: Problems) -> Vertex | None:
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
        flow=_flow(spec, key, problems),
        virtual_queue=_virtual_queue(spec.get("virtual_queue"), [*key, "virtual_queue"], problems),
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


def _flow(spec: dict[str, Any], key: list[Any], problems: Problems) -> dict[str, int]:
    """A component vertex's own flow settings (``credit: 2`` and the like): integers >= 1."""
    out: dict[str, int] = {}
    for k in FLOW_KEYS:
        if k in spec:
            v = spec[k]
            if type(v) is not int or v < 1:
                problems.add([*key, k], f"expected an integer >= 1, got {v!r}", value=True)
            else:
                out[k] = v
    return out


def _virtual_queue(spec: Any, key: list[Any], problems: Problems) -> dict[str, Any]:
    """``virtual_queue: {size: N, bytes: B, keep: all | latest}``: the worker's ``virtual_in``."""
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        problems.add(key, f"expected a mapping of {', '.join(VIRTUAL_QUEUE_KEYS)}, got {spec!r}", value=True)
        return {}
    problems.unknown_keys(spec, VIRTUAL_QUEUE_KEYS, key, "virtual_queue")
    out: dict[str, Any] = {}
    for k in ("size", "bytes"):
        if k in spec:
            if type(spec[k]) is not int or spec[k] < 1:
                problems.add([*key, k], f"expected an integer >= 1, got {spec[k]!r}", value=True)
            else:
                out[k] = spec[k]
    if "keep" in spec:
        if spec["keep"] not in ("all", "latest"):
            problems.add([*key, "keep"], f"expected all or latest, got {spec['keep']!r}", value=True)
        else:
            out["keep"] = spec["keep"]
    return out
