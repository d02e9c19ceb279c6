"""The Python values of records and pinned union options (no codec logic here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelogic.types._ast import Type

__all__ = ["Record", "Variant"]


class Record(dict[str, Any]):
    """A record value: a dict of its fields that also allows attribute access.

    ``Record({"x": 1.0}, "{x: Double}")`` validates and pins the type; ``Record({...})``
    without a type is an anonymous record (as decoded). A field named like a Python keyword
    is reachable with a trailing underscore (``box.class_``).
    """

    __pipelang_type__: Type | None = None

    def __init__(self, fields: Mapping[str, Any] | None = None, type: str | Type | None = None, /, **kw: Any) -> None:  # noqa: A002
        data = dict(fields or {}, **kw)
        if type is not None:
            from pipelogic.types._api import as_type  # local: _api imports this module

            t = as_type(type)
            from pipelogic.types._codec import codec_for  # local: the codec imports this module

            data = dict(codec_for(t).check(data))
            self.__pipelang_type__ = t
        super().__init__(data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name.endswith("_") and name[:-1] in self:
                return self[name[:-1]]
            raise AttributeError(f"record has no field {name!r} (fields: {', '.join(self)})") from None

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({dict.__repr__(self)})"

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> Record:
        obj = cls.__new__(cls)
        dict.update(obj, data)
        return obj


class Variant:
    """Pins the option of a union value: ``Variant("Just", 3)`` or ``Variant(1, 3)``."""

    __slots__ = ("tag", "value")

    def __init__(self, tag: str | int, value: Any = ()) -> None:
        self.tag = tag
        self.value = value

    def __repr__(self) -> str:
        return f"Variant({self.tag!r}, {self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Variant) and (self.tag, self.value) == (other.tag, other.value)

    def __hash__(self) -> int:
        return hash((self.tag, repr(self.value)))
