"""File slots, as on the platform: files a component reads (``worker.file_schema``) and
files it writes (``worker.generated_file_schema``), each reached through a config key.

component.yml::

    worker:
      file_schema:
        model: {file_type: onnx | pt, config_key: model_path, is_optional: false}
      generated_file_schema:
        - {name: report, file_type: csv, config_key: report_path}

pipeline.yml binds files to slots (``files: {model: ./yolo.onnx}``, paths relative to the
pipeline file). The slot's ``config_key`` parameter then holds the file's path inside the
worker: the file itself under ``pipelogic up``, ``/files/<slot>`` in a container (mounted
read-only); an optional slot left unbound holds None. A generated file's parameter holds
``out/<vertex>/<name>.<type>`` beside the pipeline file (``/generated/<name>.<type>`` in a
container, that folder mounted); the folder is created before the component starts. The
platform fills these keys itself, so declaring one in ``config_schema`` too, or setting it
under ``config:``, is an error; ``config set`` refuses them (they are not mutable).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelogic._yamlfile import Problems, near

__all__ = ["FILES_DIR", "GENERATED_DIR", "FileSlot", "bind_files", "in_container", "parse_slots"]

SLOT_KEYS = ("file_type", "config_key", "is_optional", "tag", "mutable")
GENERATED_KEYS = ("name", "file_type", "config_key")
FILES_DIR = "/files"
GENERATED_DIR = "/generated"


@dataclass(frozen=True)
class FileSlot:
    name: str
    file_types: tuple[str, ...]  # extensions, lower case; empty: any
    config_key: str
    optional: bool = False
    generated: bool = False
    tag: str = ""

    @property
    def type_text(self) -> str:
        return " | ".join(self.file_types) or "any"

    def generated_name(self) -> str:
        return f"{self.name}.{self.file_types[0]}" if self.file_types else self.name


def _types(value: Any, path: list[Any], problems: Problems) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, str) or not value.strip():
        problems.add(path, f"expected a file type or types joined with '|' (onnx | pt), got {value!r}", value=True)
        return ()
    return tuple(t.strip().lstrip(".").lower() for t in value.split("|") if t.strip())


def _key(value: Any, path: list[Any], problems: Problems, schema: dict[str, Any], keys: set[str]) -> str | None:
    if not isinstance(value, str) or not value.isidentifier():
        problems.add(path, f"expected a parameter name, got {value!r}", value=True)
        return None
    if value in schema:
        problems.add(path, f"{value!r} is also declared in config_schema; the platform fills a file slot's "
                     "config_key itself, so it must not be declared", value=True)
        return None
    if value in keys:
        problems.add(path, f"{value!r} is the config_key of another file slot", value=True)
        return None
    keys.add(value)
    return value


def parse_slots(worker: dict[str, Any], schema: dict[str, Any], problems: Problems) -> dict[str, FileSlot]:
    """The file slots of a component.yml ``worker`` section (generated ones included)."""
    slots: dict[str, FileSlot] = {}
    keys: set[str] = set()
    raw = worker.get("file_schema") or {}
    if not isinstance(raw, dict):
        problems.add(["worker", "file_schema"], f"expected a mapping of slots, got {raw!r}", value=True)
        raw = {}
    for name, entry in raw.items():
        path: list[Any] = ["worker", "file_schema", name]
        if not isinstance(entry, dict):
            problems.add(path, f"expected a mapping with file_type and config_key, got {entry!r}", value=True)
            continue
        problems.unknown_keys(entry, SLOT_KEYS, path, "a file slot")
        optional = entry.get("is_optional", False)
        if type(optional) is not bool:
            problems.add([*path, "is_optional"], f"expected true or false, got {optional!r}", value=True)
        key = _key(entry.get("config_key"), [*path, "config_key"], problems, schema, keys)
        if key is not None:
            slots[str(name)] = FileSlot(str(name), _types(entry.get("file_type"), [*path, "file_type"], problems),
                                        key, optional is True, tag=str(entry.get("tag", "")))
    gen = worker.get("generated_file_schema") or []
    if isinstance(gen, dict):  # also accepted as a mapping name -> entry
        gen = [{"name": k, **(v if isinstance(v, dict) else {})} for k, v in gen.items()]
    if not isinstance(gen, list):
        problems.add(["worker", "generated_file_schema"], f"expected a list, got {gen!r}", value=True)
        gen = []
    for i, entry in enumerate(gen):
        path = ["worker", "generated_file_schema", i]
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.add(path, f"expected a mapping with name, file_type and config_key, got {entry!r}", value=True)
            continue
        problems.unknown_keys(entry, GENERATED_KEYS, path, "a generated file")
        if entry["name"] in slots:
            problems.add([*path, "name"], f"{entry['name']!r} is already a file slot", value=True)
            continue
        key = _key(entry.get("config_key"), [*path, "config_key"], problems, schema, keys)
        if key is not None:
            slots[entry["name"]] = FileSlot(entry["name"], _types(entry.get("file_type"), [*path, "file_type"], problems),
                                            key, generated=True)
    return slots


def bind_files(slots: dict[str, FileSlot], files: Any, config: dict[str, Any], where: list[Any],
               component: str, pipeline_dir: Path, vertex: str, problems: Problems) -> dict[str, Any]:
    """The config values of a vertex's slots, from its ``files:`` (paths made absolute);
    every problem is reported at its key."""
    values: dict[str, Any] = {}
    if files is None:
        files = {}
    if not isinstance(files, dict):
        problems.add([*where, "files"], f"expected a mapping of slot: path, got {files!r}", value=True)
        files = {}
    readable = {n: s for n, s in slots.items() if not s.generated}
    for name, p in files.items():
        if name not in readable:
            known = ", ".join(readable) or "none"
            problems.add([*where, "files", name], f"{component} has no file slot {name!r}{near(name, readable)} "
                         f"(its slots: {known})")
            continue
        slot = readable[name]
        if not isinstance(p, str) or not p:
            problems.add([*where, "files", name], f"expected a file path, got {p!r}", value=True)
            continue
        path = (pipeline_dir / p).resolve() if not Path(p).is_absolute() else Path(p)
        if not path.exists():
            problems.add([*where, "files", name], f"{path}: no such file", value=True)
            continue
        ext = path.suffix.lstrip(".").lower()
        if path.is_file() and slot.file_types and ext not in slot.file_types:
            problems.add([*where, "files", name], f"{path} is not a file of type {slot.type_text} "
                         f"(slot {name!r} of {component})", value=True)
            continue
        values[slot.config_key] = str(path)
    for name, slot in slots.items():
        if slot.config_key in config:
            what = "generated file" if slot.generated else "file slot"
            fix = "it is set by the runtime" if slot.generated else "bind the file under files:"
            problems.add([*where, "config", slot.config_key], f"{slot.config_key} is the path of {what} "
                         f"{name!r}; {fix}")
        if slot.generated:
            values[slot.config_key] = str(pipeline_dir / "out" / vertex / slot.generated_name())
        elif slot.config_key not in values:
            if slot.optional:
                values[slot.config_key] = None
            else:
                problems.add([*where, "files"], f"the required file slot {name!r} ({slot.type_text}) of {component} "
                             f"is not bound: add files: {{{name}: PATH}}")
    return values


def in_container(slot: FileSlot, value: Any) -> Any:
    """A slot's path as a worker sees it: in a container (PIPELOGIC_FILES_DIR and
    PIPELOGIC_GENERATED_DIR set by the compose file) the mounted path, else ``value``."""
    if value is None:
        return None
    root = os.environ.get("PIPELOGIC_GENERATED_DIR" if slot.generated else "PIPELOGIC_FILES_DIR")
    if not root:
        return value
    return f"{root}/{slot.generated_name()}" if slot.generated else f"{root}/{slot.name}"
