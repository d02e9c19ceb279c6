"""File slots, as on the platform: files a component reads (``worker.file_schema``) and
files it writes (``worker.generated_file_schema``), each reached through a config key.

component.yml::

    worker:
      file_schema:
        model: {file_type: weights | onnx, config_key: model_path, is_optional: false}
      generated_file_schema:
        report: {name: Evidence report, file_type: pdf, config_key: report_path}

``file_type`` is a name from the platform's file-type vocabulary (:data:`FILE_TYPES`), one
or several joined with ``|``. pipeline.yml binds files to slots, paths relative to the
pipeline file: ``files: {model: ./yolo.onnx}``, or with the file's type said
``files: {model: {path: ./yolo.onnx, type: weights}}``; without one the file's types come
from its extension (:data:`EXTENSION_TYPES`: a ``.onnx`` file is ``onnx`` and
``weights``). The slot's ``config_key`` parameter then holds the file's path inside the
worker: the file itself under ``pipelogic up``, ``/files/<slot>`` in a container (mounted
read-only); an optional slot left unbound holds None. With ``target`` (a serving service:
triton, torchserve, vllm, sglang) it holds the file's display name instead, as on the
platform; no such service runs here. A generated file is named after its slot (``name``
is a display name): ``out/<vertex>/<slot>.<ext>`` beside the pipeline file
(``/generated/<slot>.<ext>`` in a container, that folder mounted); the folder is created
before the component starts. The platform fills these keys itself, so declaring one in
``config_schema`` too, or setting it under ``config:``, is an error; ``config set``
refuses them (they are not mutable).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelogic._yamlfile import Problems, near
from pipelogic.filetypes import EXTENSION_TYPES, FILE_TYPES, TYPE_EXTENSIONS, types_of

__all__ = ["FILES_DIR", "GENERATED_DIR", "FileSlot", "bind_files", "bound_path", "in_container", "parse_slots"]

SLOT_KEYS = ("file_type", "config_key", "is_optional", "tag", "mutable", "target")
GENERATED_KEYS = ("name", "file_type", "config_key")
BINDING_KEYS = ("path", "type", "name")
FILES_DIR = "/files"
GENERATED_DIR = "/generated"
TARGETS = ("triton", "torchserve", "vllm", "sglang")


@dataclass(frozen=True)
class FileSlot:
    name: str
    file_types: tuple[str, ...]  # extensions, lower case; empty: any
    config_key: str
    optional: bool = False
    generated: bool = False
    tag: str = ""
    target: str = ""  # a serving service: the config key holds the file's display name
    display: str = ""  # a generated file's display name (``name`` in component.yml)
    mutable: bool = False  # the binding may change while the pipeline runs

    @property
    def type_text(self) -> str:
        return " | ".join(self.file_types) or "any"

    def accepts(self, types: set[str]) -> bool:
        return not self.file_types or bool(types & set(self.file_types))

    def generated_name(self) -> str:
        if not self.file_types:
            return self.name
        return f"{self.name}.{TYPE_EXTENSIONS.get(self.file_types[0], self.file_types[0])}"


def _types(value: Any, path: list[Any], problems: Problems, notes: Problems | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, str) or not value.strip():
        problems.add(path, f"expected a file type or types joined with '|' (weights | onnx), got {value!r}", value=True)
        return ()
    types = tuple(t.strip().lstrip(".").lower() for t in value.split("|") if t.strip())
    unknown = [t for t in types if t not in FILE_TYPES and t not in EXTENSION_TYPES]
    if unknown and notes is not None:
        notes.add(
            path,
            f"{', '.join(map(repr, unknown))}: not in the platform's file-type vocabulary as known "
            f"here ({', '.join(FILE_TYPES)}); a file matches it only by its extension or a binding's type",
            value=True,
        )
    return types


def _key(value: Any, path: list[Any], problems: Problems, schema: dict[str, Any], keys: set[str]) -> str | None:
    if not isinstance(value, str) or not value.isidentifier():
        problems.add(path, f"expected a parameter name, got {value!r}", value=True)
        return None
    if value in schema:
        problems.add(
            path,
            f"{value!r} is also declared in config_schema; the platform fills a file slot's "
            "config_key itself, so it must not be declared",
            value=True,
        )
        return None
    if value in keys:
        problems.add(path, f"{value!r} is the config_key of another file slot", value=True)
        return None
    keys.add(value)
    return value


def parse_slots(
    worker: dict[str, Any], schema: dict[str, Any], problems: Problems, notes: Problems | None = None
) -> dict[str, FileSlot]:
    """The file slots of a component.yml ``worker`` section (generated ones included);
    what differs here from the platform goes to ``notes``."""
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
        mutable = entry.get("mutable", False)
        if type(mutable) is not bool:
            problems.add([*path, "mutable"], f"expected true or false, got {mutable!r}", value=True)
        target = entry.get("target") or ""
        if target and target not in TARGETS:
            problems.add([*path, "target"], f"expected one of {', '.join(TARGETS)}, got {target!r}", value=True)
            target = ""
        elif target and notes is not None:
            notes.add(
                [*path, "target"],
                f"the platform loads this file into its {target} service and "
                f"{entry.get('config_key')} holds the file's display name; no {target} runs here "
                "(docs/platform.md): the name is passed all the same",
                value=True,
            )
        types = _types(entry.get("file_type"), [*path, "file_type"], problems, notes)
        key = _key(entry.get("config_key"), [*path, "config_key"], problems, schema, keys)
        if key is not None:
            slots[str(name)] = FileSlot(
                str(name),
                types,
                key,
                optional is True,
                tag=str(entry.get("tag", "")),
                target=str(target),
                mutable=mutable is True,
            )
    gen = worker.get("generated_file_schema") or []
    if isinstance(gen, dict):  # the platform's form: slot -> entry, ``name`` a display name
        gen = [{**(v if isinstance(v, dict) else {"name": v}), "_slot": k} for k, v in gen.items()]
    if not isinstance(gen, list):
        problems.add(["worker", "generated_file_schema"], f"expected a mapping of slots, got {gen!r}", value=True)
        gen = []
    for i, entry in enumerate(gen):
        slot = entry.pop("_slot", None) if isinstance(entry, dict) else None
        path = ["worker", "generated_file_schema", slot if slot is not None else i]
        if not isinstance(entry, dict) or not isinstance(slot if slot is not None else entry.get("name"), str):
            problems.add(path, f"expected a mapping with name, file_type and config_key, got {entry!r}", value=True)
            continue
        problems.unknown_keys(entry, GENERATED_KEYS, path, "a generated file")
        name = slot if slot is not None else entry["name"]  # the list form: its name is the slot
        if name in slots:
            problems.add(path, f"{name!r} is already a file slot", value=True)
            continue
        key = _key(entry.get("config_key"), [*path, "config_key"], problems, schema, keys)
        if key is not None:
            slots[name] = FileSlot(
                name,
                _types(entry.get("file_type"), [*path, "file_type"], problems, notes),
                key,
                generated=True,
                display=str(entry.get("name") or name),
            )
    return slots


def bind_files(
    slots: dict[str, FileSlot],
    files: Any,
    config: dict[str, Any],
    where: list[Any],
    component: str,
    pipeline_dir: Path,
    vertex: str,
    problems: Problems,
) -> dict[str, Any]:
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
            problems.add(
                [*where, "files", name],
                f"{component} has no file slot {name!r}{near(name, readable)} (its slots: {known})",
            )
            continue
        slot = readable[name]
        at = [*where, "files", name]
        said: Any = None
        display: Any = None
        if isinstance(p, dict):  # {path: ..., type: ..., name: ...}
            problems.unknown_keys(p, BINDING_KEYS, at, "a file binding")
            said, display, p = p.get("type"), p.get("name"), p.get("path")
            if said is not None and (not isinstance(said, str) or not said):
                problems.add([*at, "type"], f"expected a file type such as weights, got {said!r}", value=True)
                continue
        if not isinstance(p, str) or not p:
            problems.add(at, f"expected a file path (or a mapping with path and type), got {p!r}", value=True)
            continue
        path = (pipeline_dir / p).resolve() if not Path(p).is_absolute() else Path(p)
        if not path.exists():
            problems.add(at, f"{path}: no such file", value=True)
            continue
        types = types_of(path, said)
        if path.is_file() and not slot.accepts(types):
            what = f"of type {said}" if said else f"of type {' | '.join(sorted(types - {'binary'}))} (by its extension)"
            problems.add(
                at,
                f"{path} is a file {what}; slot {name!r} of {component} takes {slot.type_text}"
                + ("" if said else f" (say its type: files: {{{name}: {{path: {p}, type: ...}}}})"),
                value=True,
            )
            continue
        values[slot.config_key] = str(display or path.name) if slot.target else str(path)
    for name, slot in slots.items():
        if slot.config_key in config:
            what = "generated file" if slot.generated else "file slot"
            fix = "it is set by the runtime" if slot.generated else "bind the file under files:"
            problems.add(
                [*where, "config", slot.config_key], f"{slot.config_key} is the path of {what} {name!r}; {fix}"
            )
        if slot.generated:
            values[slot.config_key] = str(pipeline_dir / "out" / vertex / slot.generated_name())
        elif slot.config_key not in values:
            if slot.optional:
                values[slot.config_key] = None
            else:
                problems.add(
                    [*where, "files"],
                    f"the required file slot {name!r} ({slot.type_text}) of {component} "
                    f"is not bound: add files: {{{name}: PATH}}",
                )
    return values


def in_container(slot: FileSlot, value: Any) -> Any:
    """A slot's path as a worker sees it: in a container (PIPELOGIC_FILES_DIR and
    PIPELOGIC_GENERATED_DIR set by the compose file) the mounted path, else ``value``."""
    if value is None or slot.target:  # a target's value is the file's display name, not a path
        return value
    root = os.environ.get("PIPELOGIC_GENERATED_DIR" if slot.generated else "PIPELOGIC_FILES_DIR")
    if not root:
        return value
    return f"{root}/{slot.generated_name()}" if slot.generated else f"{root}/{slot.name}"


def bound_path(binding: Any) -> str | None:
    """The path of a ``files:`` entry: the text itself, or a mapping's ``path``."""
    if isinstance(binding, dict):
        binding = binding.get("path")
    return binding if isinstance(binding, str) else None
