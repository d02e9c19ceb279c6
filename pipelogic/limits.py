"""Limits on what definition files, config values and literals may hold, and a safe preview
of a value for error messages.

Whatever the runtime accepts must also fit what the protocol carries and what the broker
can parse without stalling: a config value is sent in every worker's Welcome (a header of
at most ``protocol.MAX_HEADER_BYTES``), and a hostile file (a YAML alias bomb, nesting
10,000 deep, 50 MB of values) must get one clear error within seconds and bounded memory,
not a hang, a ``RecursionError`` or a ``MemoryError``. Each limit is named in the error
that enforces it.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_VALUE_BYTES",
    "MAX_DEFINITION_BYTES",
    "MAX_NESTING",
    "MAX_YAML_NODES",
    "human_bytes",
    "preview",
]

MAX_DEFINITION_BYTES = 4 * 1024 * 1024
"""A component.yml or pipeline.yml larger than this is refused before it is parsed (data
that large belongs in a jsonl or msgpack source file, which is streamed)."""

MAX_YAML_NODES = 200_000
"""Values (scalars, lists, mappings) in one definition file, counting every alias as the
whole subtree it stands for: an alias bomb is refused without being expanded."""

MAX_NESTING = 64
"""How deep lists and mappings may nest in a definition file, a config literal or a type
expression."""

MAX_CONFIG_VALUE_BYTES = 256 * 1024
"""One config value, as text and as encoded for the wire."""

MAX_CONFIG_BYTES = 1024 * 1024
"""All config values of one vertex, encoded: they travel in each worker's Welcome (at most
4 MiB with everything else it carries)."""

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6


def preview(value: Any, limit: int = 80) -> str:
    """A short ``repr`` of ``value`` for an error message: bounded in time and memory
    whatever the value (a 5 MB string, a list nested 3,000 deep, an alias bomb)."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value):,} characters)"
    text = _repr.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def human_bytes(n: int) -> str:
    """``256 KiB``, ``4 MiB``, ``1.5 MiB``, ``900 bytes``."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            q = n / size
            return f"{q:.0f} {unit}" if q == int(q) else f"{q:.1f} {unit}"
    return f"{n} bytes"
