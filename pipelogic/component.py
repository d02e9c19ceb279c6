"""component.yml: loading and checking a component directory.

Keys read (others are kept in ``raw`` and ignored)::

    name: doubler
    language: py
    worker:
      input_type: Int64            # or input_types: [Image, String]
      output_type: Int64           # or output_types: [BoundingBox, Image]
      config_schema:
        factor: {type: Int64, default: 2, description: "multiplier"}

Every problem is reported with the file and the key; all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelogic.errors import DefinitionError, PipelogicError, TypeMismatch, TypeParseError
from pipelogic.types import Type, codec_for, create_type, parse_literal

__all__ = ["ComponentSpec", "ConfigParam", "check_config_value", "load_component", "parse_component"]

_MISSING: Any = object()


@dataclass(frozen=True)
class ConfigParam:
    """One entry of ``config_schema``: its type, default (if any) and description."""

    name: str
    type_text: str
    type: Type
    default: Any = _MISSING
    description: str = ""

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING


@dataclass
class ComponentSpec:
    """A parsed component.yml."""

    name: str
    directory: Path
    file: Path
    input_types: list[Type]
    output_types: list[Type]
    config_schema: dict[str, ConfigParam]
    language: str = "py"
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def main(self) -> Path:
        return self.directory / "src" / "main.py"


def check_config_value(param: ConfigParam, value: Any) -> Any:
    """Validate a config value against its declared type; a string for a non-String type
    is read as a pipelang literal. Returns the normalised value; raises PipelogicError."""
    if isinstance(value, str) and str(param.type) not in ("String", "Char"):
        try:
            return parse_literal(value, param.type)
        except TypeParseError:
            # Not a literal at all: say what was expected rather than how parsing failed.
            raise TypeMismatch(param.type_text, f"str ({value!r})") from None
    return codec_for(param.type).check(value)


def _types(worker: dict[str, Any], single: str, plural: str, where: str, problems: list[str]) -> list[Type]:
    if single in worker and plural in worker:
        problems.append(f"{where}: worker has both {single} and {plural}; use one")
        return []
    if single in worker:
        texts: Any = [worker[single]]
        key = f"worker.{single}"
    elif plural in worker:
        texts = worker[plural]
        key = f"worker.{plural}"
        if not isinstance(texts, list):
            problems.append(f"{where}: {key}: expected a list of types, got {type(texts).__name__}")
            return []
    else:
        return []
    out = []
    for i, text in enumerate(texts):
        k = key if single in worker else f"{key}[{i}]"
        if not isinstance(text, str):
            problems.append(f"{where}: {k}: expected a type expression, got {text!r}")
            continue
        try:
            out.append(create_type(text))
        except PipelogicError as exc:
            problems.append(f"{where}: {k}: {exc}")
    return out


def parse_component(data: Any, file: Path) -> ComponentSpec:
    """Check a loaded component.yml mapping; raise DefinitionError listing every problem."""
    where = str(file)
    problems: list[str] = []
    if not isinstance(data, dict):
        raise DefinitionError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}: name: expected a non-empty string, got {name!r}")
        name = file.parent.name
    language = data.get("language", "py")
    if language not in ("py", "python"):
        problems.append(f"{where}: language: expected 'py', got {language!r}")
    worker = data.get("worker")
    if not isinstance(worker, dict):
        problems.append(f"{where}: worker: expected a mapping, got {type(worker).__name__}")
        worker = {}
    inputs = _types(worker, "input_type", "input_types", where, problems)
    outputs = _types(worker, "output_type", "output_types", where, problems)
    schema: dict[str, ConfigParam] = {}
    raw_schema = worker.get("config_schema") or {}
    if not isinstance(raw_schema, dict):
        problems.append(f"{where}: worker.config_schema: expected a mapping, got {type(raw_schema).__name__}")
        raw_schema = {}
    for key, entry in raw_schema.items():
        k = f"worker.config_schema.{key}"
        if not isinstance(entry, dict) or "type" not in entry:
            problems.append(f"{where}: {k}: expected a mapping with a type, got {entry!r}")
            continue
        try:
            t = create_type(str(entry["type"]))
        except PipelogicError as exc:
            problems.append(f"{where}: {k}.type: {exc}")
            continue
        param = ConfigParam(str(key), str(entry["type"]), t, description=str(entry.get("description", "")))
        if "default" in entry:
            try:
                default = check_config_value(param, entry["default"])
            except PipelogicError as exc:
                problems.append(f"{where}: {k}.default: {exc}")
                continue
            param = ConfigParam(param.name, param.type_text, t, default, param.description)
        schema[str(key)] = param
    if problems:
        raise DefinitionError(problems)
    return ComponentSpec(
        name=name,
        directory=file.parent,
        file=file,
        input_types=inputs,
        output_types=outputs,
        config_schema=schema,
        language="py",
        raw=data,
    )


def load_component(path: str | Path) -> ComponentSpec:
    """Load a component directory (or its component.yml file)."""
    p = Path(path)
    file = p if p.is_file() else p / "component.yml"
    if not file.exists():
        raise DefinitionError(f"{file}: no component.yml here")
    try:
        data = yaml.safe_load(file.read_text("utf-8"))
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{file}: not valid YAML: {exc}") from None
    return parse_component(data, file.resolve())
