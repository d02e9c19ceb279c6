"""Definition files (component.yml, pipeline.yml): YAML with positions, and one way to
report what is wrong in them.

Every problem reads ``file:line:column: key.path: what is wrong`` (the position of the
key, or of the value when the value is what is wrong), so an editor or a terminal jumps
straight to it. Mappings and lists loaded here are plain ``dict`` and ``list`` subclasses
that remember where each entry was; data built in code has no positions and its problems
read ``file: key.path: ...``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipelogic.errors import DefinitionError
from pipelogic.limits import MAX_DEFINITION_BYTES, MAX_NESTING, MAX_YAML_NODES, human_bytes

__all__ = ["Problems", "load_yaml", "near", "position"]

Mark = tuple[int, int]  # 1-based line and column


class _Map(dict[Any, Any]):
    """A mapping that remembers where it and each of its keys and values are."""

    here: Mark | None = None
    keys_at: dict[Any, Mark]
    values_at: dict[Any, Mark]


class _Seq(list[Any]):
    here: Mark | None = None
    items_at: list[Mark]


def _mark(node: yaml.Node) -> Mark:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps positions and refuses a key given twice (YAML would keep the
    last one silently, so a second ``config:`` would wipe out the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        out = _Map()
        out.here = _mark(node)
        out.keys_at, out.values_at = {}, {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"a key must be a plain value, got {type(key).__name__}",
                    key_node.start_mark,
                ) from None
            if key in out:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first at line {out.keys_at[key][0]}); "
                    "YAML would silently keep only the last one",
                    key_node.start_mark,
                )
            out[key] = self.construct_object(value_node, deep=True)
            out.keys_at[key] = _mark(key_node)
            out.values_at[key] = _mark(value_node)
        return out

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> list[Any]:
        out = _Seq(self.construct_object(child, deep=True) for child in node.value)
        out.here = _mark(node)
        out.items_at = [_mark(child) for child in node.value]
        return out


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_sequence)


def _prescan(text: str, file: Path) -> None:
    """Refuse what would hang or blow up the loader, from the parser's events (which come
    without recursion and without expanding aliases): nesting deeper than MAX_NESTING, and
    more than MAX_YAML_NODES values counting each alias as the subtree it stands for."""
    sizes: dict[str, int] = {}  # anchor -> values its subtree holds
    stack: list[list[Any]] = [[None, 0]]  # [anchor, values in this open collection so far]
    total = 0
    events = yaml.parse(text, Loader=_FastLoader)
    while True:
        try:
            event = next(events)
        except StopIteration:
            return
        except yaml.MarkedYAMLError as exc:
            if "nesting depth" in (exc.problem or ""):
                # libyaml's own bound (1,000 levels since 0.2.5, as PyYAML 6.0.4's wheels
                # bundle it), met while its scanner looks ahead for a key, before these
                # events reach ours: the same refusal (the pure-Python loader the file
                # would go to next recurses past Python's limit at that depth).
                m = exc.problem_mark
                raise _too_deep(f"{file}:{m.line + 1}:{m.column + 1}" if m is not None else str(file)) from None
            return  # a syntax error: the loader reports it, with its own wording and position
        except yaml.YAMLError:
            return
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) > MAX_NESTING:
                raise _too_deep(_at(file, event))
            stack.append([event.anchor, 1])
            n = 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, done = stack.pop()
            if anchor is not None:
                sizes[anchor] = done
            stack[-1][1] += done
            continue
        elif isinstance(event, yaml.ScalarEvent):
            n = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
            stack[-1][1] += 1
        elif isinstance(event, yaml.AliasEvent):
            n = sizes.get(event.anchor or "", 1)
            stack[-1][1] += n
        else:
            continue
        total += n
        if total > MAX_YAML_NODES:
            raise DefinitionError(
                f"{_at(file, event)}: more than {MAX_YAML_NODES:,} values (an alias counts as "
                "all it repeats; the limit for a definition file): put large data in a jsonl or msgpack "
                "source file"
            )


def _too_deep(where: str) -> DefinitionError:
    return DefinitionError(
        f"{where}: lists and mappings nest more than {MAX_NESTING} deep (the limit for a definition file)"
    )


def _at(file: Path, event: yaml.Event) -> str:
    m = event.start_mark
    return f"{file}:{m.line + 1}:{m.column + 1}" if m is not None else str(file)


_FastLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # only to read events faster


def _hint(exc: yaml.MarkedYAMLError, text: str) -> str:
    """A hint for the common slips behind a YAML syntax error (a tab, a missing space after
    a colon, a bracket or a quote left open), or ""."""
    problem, context = exc.problem or "", exc.context or ""
    opened = exc.context_mark.line + 1 if exc.context_mark is not None else None
    if "'\\t'" in problem or "\t" in problem:
        return "; YAML indents with spaces, never tabs"
    if "quoted scalar" in context and "end of stream" in problem:
        return f"; the quote opened on line {opened} is not closed"
    if "flow mapping" in context or "flow sequence" in context:
        bracket = "}" if "mapping" in context else "]"
        return f"; is a '{bracket}' missing at the end of line {opened}, or a ',' between two entries?"
    if "mapping values are not allowed" in problem:
        return "; a key needs a space after its ':' (key: value), and a value with ': ' in it needs quotes"
    if exc.problem_mark is not None:
        lines = text.splitlines()
        line = lines[exc.problem_mark.line] if exc.problem_mark.line < len(lines) else ""
        if re.search(r"^\s*[\w-]+:[^\s/]", line):
            return "; a key needs a space after its ':' (key: value)"
    return ""


def load_yaml(file: Path) -> Any:
    """Parse ``file``; a syntax error is a DefinitionError ``file:line:col: problem``.
    Files over MAX_DEFINITION_BYTES, nested over MAX_NESTING or holding over MAX_YAML_NODES
    values (aliases expanded) are refused first, with the limit in the message."""
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise DefinitionError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if size > MAX_DEFINITION_BYTES:
        raise DefinitionError(
            f"{file}: {human_bytes(size)} is over the {human_bytes(MAX_DEFINITION_BYTES)} "
            "limit for a definition file; put large data in a jsonl or msgpack source file"
        )
    try:
        text = file.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DefinitionError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        _prescan(text, file)
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(file)
        what = exc.problem or exc.context or "not valid YAML"
        context = (
            f" ({exc.context} at line {exc.context_mark.line + 1})"
            if (exc.context and exc.problem and exc.context_mark is not None and mark is not exc.context_mark)
            else ""
        )
        raise DefinitionError(f"{where}: not valid YAML: {what}{context}{_hint(exc, text)}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{file}: not valid YAML: {exc}") from None


def position(root: Any, path: Iterable[Any], value: bool = False) -> Mark | None:
    """Where the entry at ``path`` (keys and list indexes) is: its key, or with ``value``
    its value. The deepest known position along the path if the entry itself is missing."""
    node, best = root, getattr(root, "here", None)
    parts = list(path)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, _Map) and part in node:
            best = (node.values_at if (value or not last) else node.keys_at).get(part, best)
            node = node[part]
        elif isinstance(node, _Seq) and isinstance(part, int) and 0 <= part < len(node):
            best = node.items_at[part]
            node = node[part]
        else:
            break
    return best


def near(word: Any, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for a likely typo of one of ``choices``, else ``""``."""
    if not isinstance(word, str):
        return ""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean {lowered[found[0]]!r}?" if found else ""


def _dotted(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += (
            f"[{part}]" if isinstance(part, int) and not isinstance(part, bool) else (f".{part}" if out else str(part))
        )
    return out


class Problems:
    """Collects every problem of one file, each placed at its key."""

    def __init__(self, file: Path, root: Any) -> None:
        self.file = file
        self.root = root
        self.items: list[str] = []

    def add(self, path: Iterable[Any], message: str, value: bool = False) -> None:
        parts = list(path)
        mark = position(self.root, parts, value)
        where = f"{self.file}:{mark[0]}:{mark[1]}" if mark is not None else str(self.file)
        key = _dotted(parts)
        if len(message) > 2000:  # a huge value quoted in a message: its start says enough
            message = message[:2000] + f"... ({len(message):,} characters)"
        self.items.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")

    def extend(self, problems: Iterable[str]) -> None:
        for p in problems:
            if p not in self.items:
                self.items.append(p)

    def unknown_keys(self, mapping: Mapping[Any, Any], allowed: Iterable[str], path: Iterable[Any], what: str) -> None:
        """An error for each key of ``mapping`` not in ``allowed``, with a hint."""
        known = list(allowed)
        for key in mapping:
            if key not in known:
                hint = near(key, known) or f" (the keys of {what} are: {', '.join(known)})"
                self.add([*path, key], f"unknown key {key!r}{hint}")

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise DefinitionError(list(self.items))
