"""``config``: the component's config_schema values as typed attributes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelogic.component import ConfigParam
from pipelogic.errors import ConfigError
from pipelogic.files import in_container
from pipelogic.types import decode, wrap

__all__ = ["Config"]


class Config:
    """Singleton exposing config_schema parameters as attributes.

    ``config.threshold`` returns the value in the wrapper of its declared type, so
    ``float(config.threshold)``, ``tuple(config.mean)`` and ``str(config.language)`` work.
    Reading a parameter that has no value, or that the schema does not declare, raises
    :class:`ConfigError` at once. Live updates pushed by the broker are applied between
    ticks; :meth:`sync` returns the ones that arrived since its last call.

    The first read connects to the broker (values live there), so a module may read
    config at its top level, before ``run()``.
    """

    def __init__(self) -> None:
        self._schema: dict[str, ConfigParam] | None = None
        self._values: dict[str, Any] = {}
        self._changed: dict[str, Any] = {}
        self._version = 0
        self._loader: Callable[[], None] | None = None
        self._lock = threading.Lock()

    # -- runtime side ----------------------------------------------------------------------

    def _bind(self, schema: dict[str, ConfigParam], values: dict[str, Any], version: int) -> None:
        """Install the schema and the (wire-encoded) values from the Welcome."""
        with self._lock:
            self._schema = schema
            self._values = {k: self._decode(k, v) for k, v in values.items() if k in schema}
            self._version = version
            self._changed = {}

    def _decode(self, key: str, wire: Any) -> Any:
        assert self._schema is not None
        param = self._schema[key]
        value = decode(wire, param.type)
        if param.slot is not None:
            value = in_container(param.slot, value)
            if param.slot.generated and value is not None:
                Path(value).parent.mkdir(parents=True, exist_ok=True)  # the component writes there
            return value
        if type(value) is bool:
            return value  # a real bool: `is True` holds and json.dumps gives true
        return wrap(value, self._schema[key].type)

    def _apply(self, values: dict[str, Any], version: int) -> list[str]:
        """Apply a pushed update (between ticks); older versions are ignored."""
        with self._lock:
            if version <= self._version or self._schema is None:
                return []
            changed = []
            for k, v in values.items():
                if k in self._schema:
                    self._values[k] = self._decode(k, v)
                    self._changed[k] = self._values[k]
                    changed.append(k)
            self._version = version
            return changed

    @property
    def version(self) -> int:
        return self._version

    # -- user side -------------------------------------------------------------------------

    def _ensure(self) -> dict[str, ConfigParam]:
        if self._schema is None and self._loader is not None:
            self._loader()
        if self._schema is None:
            raise ConfigError(
                "config is not available: no worker session (run the component with "
                "`pipelogic up`, `pipelogic worker` or pipelogic.testing)"
            )
        return self._schema

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        schema = self._ensure()
        if name not in schema:
            known = ", ".join(sorted(schema)) or "none"
            raise ConfigError(f"config has no parameter {name!r} in config_schema (declared: {known})")
        try:
            return self._values[name]
        except KeyError:
            raise ConfigError(
                f"config parameter {name!r} ({schema[name].type_text}) has no value and no default"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def as_dict(self) -> dict[str, Any]:
        self._ensure()
        return dict(self._values)

    def sync(self) -> dict[str, Any]:
        """The keys (with their new values) changed by live updates since the last call."""
        with self._lock:
            changed, self._changed = self._changed, {}
        return changed

    def __repr__(self) -> str:
        return f"Config({self._values!r})" if self._schema is not None else "Config(<not loaded>)"
