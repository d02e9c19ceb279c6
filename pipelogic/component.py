"""component.yml: loading and checking a component directory.

Keys read (under ``worker`` every key is checked; other top-level keys, the platform's
``categories``, ``tags`` and the like, are kept in ``raw``)::

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

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelogic._yamlfile import Problems, load_yaml, near
from pipelogic.errors import DefinitionError, PipelogicError, TypeMismatch, TypeParseError
from pipelogic.files import FileSlot, parse_slots
from pipelogic.limits import MAX_CONFIG_BYTES, MAX_CONFIG_VALUE_BYTES, human_bytes, preview
from pipelogic.porting import build_system_note
from pipelogic.types import Type, codec_for, create_type, encode_frame, parse_literal

__all__ = [
    "ComponentSpec",
    "ConfigParam",
    "check_config_value",
    "check_config_total",
    "check_sources",
    "load_component",
    "parse_component",
    "not_a_name",
    "parse_type",
    "type_typos",
]

_MISSING: Any = object()


@dataclass(frozen=True)
class ConfigParam:
    """One entry of ``config_schema``: its type, default (if any) and description."""

    name: str
    type_text: str
    type: Type
    default: Any = _MISSING
    description: str = ""
    mutable: bool = True  # False: fixed for the run; `config set` refuses it
    slot: FileSlot | None = None  # the file slot whose path this parameter holds (set by the runtime)

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
    file_slots: dict[str, FileSlot] = field(default_factory=dict)  # read and generated files
    notes: list[str] = field(default_factory=list)  # how it differs here: validate's warnings
    cache: bool = False  # worker.cache: a cache folder kept across runs (docs/platform.md)

    @property
    def main(self) -> Path:
        return self.directory / "src" / "main.py"


def check_config_value(param: ConfigParam, value: Any) -> Any:
    """Validate a config value against its declared type; a string for a non-String type
    is read as a pipelang literal. For a String or Char, a string in double quotes is read
    as a quoted literal (``"abc"`` is abc) and any other string as it is (``123`` is
    "123"), the same from pipeline.yml and from ``config set``. Returns the normalised
    value; raises PipelogicError.

    A value is at most MAX_CONFIG_VALUE_BYTES, as text and encoded (config travels in
    every worker's Welcome: what is accepted here must be deliverable)."""
    if (
        isinstance(value, str)
        and len(value) > MAX_CONFIG_VALUE_BYTES // 4
        and len(value.encode("utf-8", "surrogatepass")) > MAX_CONFIG_VALUE_BYTES
    ):
        raise PipelogicError(
            f"{human_bytes(len(value.encode('utf-8', 'surrogatepass')))} of text is over the "
            f"{human_bytes(MAX_CONFIG_VALUE_BYTES)} limit for one config value "
            "(large data belongs in a file slot: file_schema in component.yml)"
        )
    checked = _check_config_value(param, value)
    size = config_size(param, checked)
    if size > MAX_CONFIG_VALUE_BYTES:
        raise PipelogicError(
            f"the value takes {human_bytes(size)} encoded, over the "
            f"{human_bytes(MAX_CONFIG_VALUE_BYTES)} limit for one config value "
            "(large data belongs in a file slot: file_schema in component.yml)"
        )
    return checked


def config_size(param: ConfigParam, value: Any) -> int:
    """Bytes ``value`` takes on the wire."""
    frame, bufs = encode_frame(value, param.type)
    return len(frame) + sum(memoryview(b).nbytes for b in bufs)


def check_config_total(schema: dict[str, ConfigParam], config: dict[str, Any]) -> str | None:
    """Why the config values of one vertex are too large to deliver together (over
    MAX_CONFIG_BYTES encoded), or None."""
    total = sum(config_size(schema[k], v) for k, v in config.items() if k in schema)
    if total <= MAX_CONFIG_BYTES:
        return None
    return (
        f"its config values take {human_bytes(total)} together, over the {human_bytes(MAX_CONFIG_BYTES)} "
        "limit for one vertex (they travel in each worker's Welcome; large data belongs in a file slot)"
    )


def _check_config_value(param: ConfigParam, value: Any) -> Any:
    if isinstance(value, str) and str(param.type) in ("String", "Char"):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                raise TypeMismatch(param.type_text, f"a malformed quoted string ({preview(value)})") from None
        return codec_for(param.type).check(value)
    if isinstance(value, str) and str(param.type) not in ("String", "Char"):
        try:
            return parse_literal(value, param.type)
        except TypeParseError:
            # Not a literal at all: say what was expected rather than how parsing failed.
            raise TypeMismatch(param.type_text, f"str ({preview(value)})") from None
    return codec_for(param.type).check(value)


# The component.yml keys the runtime reads. Under ``worker`` every key is checked (a typo
# there silently changes what the component is); at the top level only a likely typo of
# these is refused, since the platform's files carry many more (categories, tags, ...).
TOP_KEYS = (
    "name",
    "language",
    "worker",
    "platform",
    "tags",
    "build_system",
    "install",
    "xmake_packages",
    "categories",
    "modalities",
    "neighbors",
    "alternatives",
    "http",
    "depends_on",
    "description",
)
WORKER_KEYS = (
    "input_type",
    "input_types",
    "output_type",
    "output_types",
    "config_schema",
    "file_schema",
    "generated_file_schema",
    "cache",
)
CACHE_WHERE = ".pipelogic/cache/<component> beside the pipeline under `up`, a volume at /cache in containers"
PARAM_KEYS = ("type", "default", "description", "mutable")


def type_typos(t: Type) -> tuple[list[str], list[str]]:
    """(errors, warnings) for type variables that look like type names. A lowercase name is
    a variable, which matches anything, so ``int64`` for ``Int64`` would pass every check
    and fail at run time: an error for the names of the built-in atomic types. The
    platform's docs name variables after catalog types (``frame``, ``image``, ``point``),
    so for those it is a warning."""
    from pipelogic.types import free_vars, known_names
    from pipelogic.types._ast import ATOMIC_NAMES

    atomic = sorted(ATOMIC_NAMES)
    catalog = [n for n in known_names() if n not in ATOMIC_NAMES]
    errors: list[str] = []
    warnings: list[str] = []
    for var in sorted(free_vars(t)):
        said = f"{var!r} is a type variable (lowercase names are); did you mean"
        exact = {n.lower(): (n, out) for names, out in ((catalog, warnings), (atomic, errors)) for n in names}
        if var.lower() in exact:
            name, out = exact[var.lower()]
            out.append(f"{said} {name!r}?")
            continue
        if len(var) <= 3:
            continue
        # Close to an atomic name (``strng``): a typo. Close to a catalog name: maybe meant.
        for names, out, cutoff in ((atomic, errors, 0.8), (catalog, warnings, 0.6)):
            found = difflib.get_close_matches(var.lower(), [n.lower() for n in names], n=1, cutoff=cutoff)
            if found:
                out.append(f"{said} {next(n for n in names if n.lower() == found[0])!r}?")
                break
    return errors, warnings


def not_a_name(key: Any) -> str:
    """YAML 1.1 reads yes/no/on/off/true/false (and numbers) as non-strings."""
    hint = (
        " (YAML reads yes, no, on, off, true and false as booleans: quote the name, 'on')"
        if isinstance(key, bool)
        else " (quote it)"
    )
    return f"a name must be a string, got {type(key).__name__} {key!r}{hint}"


def parse_type(text: Any, path: list[Any], problems: Problems, notes: Problems | None = None) -> Type | None:
    """A type expression from a definition file, with typos of type names refused (only
    noted in ``notes`` where :func:`type_typos` calls them warnings, if given)."""
    if not isinstance(text, str):
        problems.add(path, f"expected a type expression, got {text!r}", value=True)
        return None
    try:
        t = create_type(text)
    except PipelogicError as exc:
        problems.add(path, str(exc), value=True)
        return None
    errors, warnings = type_typos(t)
    if notes is None:
        errors += warnings
    for typo in errors:
        problems.add(path, f"{typo} (in {text!r})", value=True)
    if notes is not None:
        for typo in warnings:
            notes.add(path, f"{typo} (in {text!r}; fine if you meant a variable)", value=True)
    return None if errors else t


def _types(worker: dict[str, Any], single: str, plural: str, problems: Problems, notes: Problems) -> list[Type]:
    if single in worker and plural in worker:
        problems.add(["worker", plural], f"worker has both {single} and {plural}; use one")
        return []
    if single in worker:
        t = parse_type(worker[single], ["worker", single], problems, notes)
        return [t] if t is not None else []
    if plural not in worker:
        return []
    texts = worker[plural]
    if not isinstance(texts, list):
        problems.add(["worker", plural], f"expected a list of types, got {type(texts).__name__}", value=True)
        return []
    out = []
    for i, text in enumerate(texts):
        t = parse_type(text, ["worker", plural, i], problems, notes)
        if t is not None:
            out.append(t)
    return out


def parse_component(data: Any, file: Path) -> ComponentSpec:
    """Check a loaded component.yml mapping; raise DefinitionError listing every problem."""
    problems = Problems(file, data)
    notes = Problems(file, data)  # what validate says as warnings
    if not isinstance(data, dict):
        raise DefinitionError(f"{file}: expected a mapping at the top level, got {type(data).__name__}")
    _platform_keys(data, problems, notes)
    for key in data:
        hint = near(key, TOP_KEYS) if key not in TOP_KEYS else ""
        if hint:
            problems.add([key], f"unknown key {key!r}{hint}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        problems.add(["name"], f"expected a non-empty string, got {name!r}", value=True)
        name = file.parent.name
    language = data.get("language", "py")
    if language not in ("py", "python"):
        problems.add(["language"], f"expected 'py', got {language!r}", value=True)
    worker = data.get("worker")
    if not isinstance(worker, dict):
        problems.add(["worker"], f"expected a mapping, got {type(worker).__name__}", value=True)
        worker = {}
    problems.unknown_keys(worker, WORKER_KEYS, ["worker"], "worker")
    inputs = _types(worker, "input_type", "input_types", problems, notes)
    outputs = _types(worker, "output_type", "output_types", problems, notes)
    schema: dict[str, ConfigParam] = {}
    raw_schema = worker.get("config_schema") or {}
    if not isinstance(raw_schema, dict):
        problems.add(["worker", "config_schema"], f"expected a mapping, got {type(raw_schema).__name__}", value=True)
        raw_schema = {}
    for key, entry in raw_schema.items():
        k = ["worker", "config_schema", key]
        if not isinstance(key, str):
            problems.add(k, not_a_name(key))
            continue
        if not isinstance(entry, dict) or "type" not in entry:
            problems.add(k, f"expected a mapping with a type, got {entry!r}", value=True)
            continue
        problems.unknown_keys(entry, PARAM_KEYS, k, "a config parameter")
        t = parse_type(str(entry["type"]), [*k, "type"], problems, notes)
        if t is None:
            continue
        mutable = entry.get("mutable", True)
        if type(mutable) is not bool:
            problems.add([*k, "mutable"], f"expected true or false, got {mutable!r}", value=True)
            mutable = True
        param = ConfigParam(
            str(key), str(entry["type"]), t, description=str(entry.get("description", "")), mutable=mutable
        )
        if "default" in entry:
            try:
                default = check_config_value(param, entry["default"])
            except PipelogicError as exc:
                problems.add([*k, "default"], str(exc), value=True)
                continue
            param = ConfigParam(param.name, param.type_text, t, default, param.description, param.mutable)
        schema[str(key)] = param
    slots = parse_slots(worker, schema, problems, notes)
    for slot in slots.values():  # the runtime fills these parameters with the files' paths
        text = "Maybe<String>" if slot.optional else "String"
        schema[slot.config_key] = ConfigParam(
            slot.config_key,
            text,
            create_type(text),
            description=f"path of file {slot.name!r} ({slot.type_text})",
            mutable=slot.mutable,
            slot=slot,
        )
    problems.raise_if_any()
    return ComponentSpec(
        name=name,
        directory=file.parent,
        file=file,
        input_types=inputs,
        output_types=outputs,
        config_schema=schema,
        language="py",
        raw=data,
        file_slots=slots,
        notes=notes.items,
        cache=worker.get("cache") is not None,
    )


def _platform_keys(data: dict[str, Any], problems: Problems, notes: Problems) -> None:
    """The platform's component.yml keys that do something there and nothing (or
    something else) here: checked where they can be, and said."""
    if "build_system" in data:
        error, note = build_system_note(data["build_system"])
        if error:
            problems.add(["build_system"], error, value=True)
        else:
            notes.add(["build_system"], note, value=True)
    deps = data.get("depends_on")
    if deps:
        names = ", ".join(map(str, deps)) if isinstance(deps, list) else str(deps)
        notes.add(
            ["depends_on"],
            f"the platform starts {names} beside the component; no such service runs here "
            "(docs/platform.md): start it yourself and point the component at it through its config",
        )
    if data.get("http"):
        notes.add(
            ["http"],
            "the platform routes these HTTP endpoints to the component; here nothing is "
            "routed: the component's own server is reachable only if you publish its port yourself",
        )
    worker = data.get("worker")
    if isinstance(worker, dict) and worker.get("cache") is not None:
        notes.add(
            ["worker", "cache"],
            "a cache that survives runs: here the worker gets PIPELOGIC_CACHE_DIR "
            f"(and XDG_CACHE_HOME, HF_HOME, TORCH_HOME) on a folder kept across runs ({CACHE_WHERE})",
        )


def check_sources(spec: ComponentSpec) -> list[str]:
    """Problems with the component's code that show without running it: ``src/main.py``
    missing, unreadable or not valid Python (``file:line:col: ...``)."""
    main = spec.main
    if not main.is_file():
        return [f"{main}: no such file (a component runs src/main.py, which calls pipelogic.worker.run)"]
    try:
        source = main.read_bytes()
        compile(source, str(main), "exec", dont_inherit=True)
    except SyntaxError as exc:
        col = f":{exc.offset}" if exc.offset else ""
        return [f"{main}:{exc.lineno or 0}{col}: {type(exc).__name__}: {exc.msg}"]
    except (OSError, ValueError) as exc:
        return [f"{main}: cannot read or compile: {exc}"]
    return []


def load_component(path: str | Path) -> ComponentSpec:
    """Load a component directory (or its component.yml file)."""
    p = Path(path)
    file = p if p.is_file() else p / "component.yml"
    if not file.exists():
        raise DefinitionError(f"{file}: no component.yml here")
    return parse_component(load_yaml(file), file.resolve())
