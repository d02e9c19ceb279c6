"""Live config: ``pipelogic config set`` validated against the vertex's config_schema,
pushed to its worker, and answered once the worker applied it (or its wait ran out).

Plain code like the scheduler: each method takes a message (and the time) and returns the
actions to carry out. Replies are ``durable``: a broker with a recovery store sends them
only once the new version is committed, so a version a client was told about survives a
broker restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backend_stub.model import Action, Reply, Send
from backend_stub.vertices import ComponentVertex, VertexState
from pipelogic import protocol as P
from pipelogic._yamlfile import near
from pipelogic.component import check_config_total, check_config_value
from pipelogic.errors import PipelogicError
from pipelogic.files import FileSlot
from pipelogic.filetypes import types_of
from pipelogic.limits import preview
from pipelogic.types import encode

__all__ = ["ConfigDesk"]


def _reply(client: Any, ok: bool, version: int, applied: bool, error: str | None = None) -> Action:
    return Reply(client, P.encode(P.ConfigReply(ok, version, applied, error)), durable=True)


def _rebind(slot: FileSlot, text: Any, base: Path) -> tuple[str, str]:
    """(the slot's new config value, "") for a path given to ``config set``, or ("", why not)."""
    if not isinstance(text, str) or not text.strip('"'):
        return "", f"expected the path of a file for slot {slot.name!r}, got {preview(text)}"
    p = Path(text.strip('"'))
    path = p if p.is_absolute() else (base / p).resolve()
    if not path.is_file():
        return "", f"{path}: no such file (a relative path is taken from the pipeline's folder)"
    types = types_of(path)
    if not slot.accepts(types):
        return "", (
            f"{path} is a file of type {' | '.join(sorted(types - {'binary'}))} (by its extension); "
            f"slot {slot.name!r} takes {slot.type_text}"
        )
    return (path.name if slot.target else str(path)), ""


class ConfigDesk:
    """Config requests waiting for their worker: (client, vertex, version, deadline)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, str, int, float]] = []

    def set(
        self,
        vs: VertexState | None,
        msg: P.ConfigSet,
        client: Any,
        now: float,
        components: Iterable[str] = (),
        base: Path | None = None,
    ) -> list[Action]:
        """Validate and push an update of ``vs`` (None: no such component vertex;
        ``components``: the component vertices, to suggest one for a misspelt name). The
        config key of a ``mutable`` file slot takes a path (relative to ``base``, the
        pipeline's folder), checked like a binding in pipeline.yml."""
        if not isinstance(vs, ComponentVertex) or vs.v.component is None:
            names = list(components)
            return [
                _reply(
                    client,
                    False,
                    0,
                    False,
                    f"unknown component vertex {msg.vertex!r}{near(msg.vertex, names)} "
                    f"(component vertices: {', '.join(names) or 'none'})",
                )
            ]
        schema = vs.v.component.config_schema
        version = vs.config_version

        def refused(why: str) -> list[Action]:
            return [_reply(client, False, version, False, f"vertex {vs.name}: {why}")]

        new: dict[str, Any] = {}
        for k, text in msg.values.items():
            if k not in schema:
                return refused(
                    f"{k!r} is not in config_schema{near(k, schema)} (declared: {', '.join(schema) or 'none'})"
                )
            slot = schema[k].slot
            if not schema[k].mutable:
                where = (
                    f"the path of file slot {slot.name!r}, which is not mutable (add mutable: true to the slot "
                    "in file_schema)"
                    if slot is not None
                    else "not mutable (mutable: false in config_schema)"
                )
                return refused(
                    f"{k} is {where}; it is fixed for the run: change it in pipeline.yml and start a new run"
                )
            if slot is not None:
                value, error = _rebind(slot, text, base or Path.cwd())
                if error:
                    return refused(f"{k}: {error}")
                new[k] = value
                continue
            try:
                new[k] = check_config_value(schema[k], text)
            except PipelogicError as exc:
                return refused(f"{k}: declared type {schema[k].type_text}, value {preview(text)}: {exc}")
        too_large = check_config_total(schema, {**vs.v.config, **new})
        if too_large:  # refused before it is kept: what is persisted must reach the workers
            return refused(too_large)
        vs.v.config.update(new)
        vs.config_version += 1
        wire = {k: encode(v, schema[k].type)[0] for k, v in new.items()}
        actions: list[Action] = []
        epochs = vs.epochs()  # a replicated vertex: every instance, answered once all applied it
        if epochs and not vs.finished:
            for epoch in epochs:
                actions.append(Send(epoch, P.encode(P.ConfigPush(vs.config_version, wire))))
            if msg.wait_ms > 0:
                self.pending.append((client, vs.name, vs.config_version, now + msg.wait_ms / 1000))
                return actions
        actions.append(_reply(client, True, vs.config_version, False))
        return actions

    def applied(self, vs: ComponentVertex, version: int) -> list[Action]:
        """The worker of ``vs`` applied ``version``: answer who waited for it."""
        out, keep = [], []
        for client, name, want, deadline in self.pending:
            if name == vs.name and version >= want:
                out.append(_reply(client, True, version, True))
            else:
                keep.append((client, name, want, deadline))
        self.pending = keep
        return out

    def expire(self, now: float) -> list[Action]:
        """Answer the requests whose wait ran out."""
        out, keep = [], []
        for client, name, want, deadline in self.pending:
            if now >= deadline:
                out.append(_reply(client, True, want, False, "not applied yet (the worker is busy or gone)"))
            else:
                keep.append((client, name, want, deadline))
        self.pending = keep
        return out
