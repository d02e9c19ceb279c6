"""Which of the user's own classes a snapshot may hold, and finding them again on restore.

A state may hold dataclasses, NamedTuples and enums defined in the component's own source:
the ``__main__`` module (``src/main.py``) or a module whose file lies under one of the
source roots (the component's folder, and the folder of the worker function's file). A
snapshot names such a class by module and qualified name; restoring it looks the name up
in a module that is already imported (importing could run code) through the modules' and
classes' own ``__dict__`` (no ``getattr`` hooks), and builds the value without calling the
class: ``object.__new__`` and ``object.__setattr__`` for a dataclass, ``tuple.__new__`` for
a NamedTuple, the member table for an enum. So decoding a snapshot runs no user code.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["SourceClasses", "class_kind"]


def class_kind(cls: type) -> str | None:
    """``"dataclass"``, ``"namedtuple"``, ``"enum"``, or None for any other class."""
    if isinstance(cls, enum.EnumMeta):
        return "enum"
    if dataclasses.is_dataclass(cls):
        return "dataclass"
    if issubclass(cls, tuple) and isinstance(cls.__dict__.get("_fields"), tuple):
        return "namedtuple"
    return None


class SourceClasses:
    """The classes of the component's own source. ``roots`` are folders; None means only
    the ``__main__`` module's classes."""

    def __init__(self, roots: Iterable[str | Path] = ()) -> None:
        self.roots = tuple(Path(r).resolve() for r in roots)

    def _own_module(self, name: str) -> Any:
        module = sys.modules.get(name)
        if module is None:
            return None
        if name == "__main__":
            return module
        file = module.__dict__.get("__file__")
        if not isinstance(file, str):
            return None
        path = Path(file).resolve()
        if any(path.is_relative_to(root) for root in self.roots) and "site-packages" not in path.parts:
            return module
        return None

    def why_not(self, cls: type) -> str | None:
        """None if values of ``cls`` may be snapshotted; else why not, in a few words."""
        kind = class_kind(cls)
        if kind is None:
            return "not a dataclass, NamedTuple or enum"
        where = f"{cls.__module__}.{cls.__qualname__}"
        if "<locals>" in cls.__qualname__:
            return f"{kind} {where} is defined inside a function (define it at module level)"
        if self.find(cls.__module__, cls.__qualname__) is not cls:
            return (
                f"{kind} {where} is not defined in the component's own source (src/ and the worker function's folder)"
            )
        return None

    def find(self, module_name: str, qualname: str) -> type | None:
        """The class named ``qualname`` in the already imported own module ``module_name``,
        if it is a dataclass, NamedTuple or enum; else None."""
        module = self._own_module(module_name)
        if module is None:
            return None
        obj: Any = module
        for part in qualname.split("."):
            obj = obj.__dict__.get(part)
            if not isinstance(obj, type):
                return None
        return obj if class_kind(obj) is not None else None
