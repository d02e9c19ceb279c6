"""Decoding a tick's input values, with the platform's Maybe unpack adapter.

A consumer decodes with its producer's type (the Welcome's ``input_types``). Where the
producer sends ``Maybe<t>`` and the component declares ``t``, the edge has an unpack
adapter: ``Nothing`` never reaches the function. In streaming mode it is left out of the
input's list; in synchronous mode the tick is skipped (no call, no output), as the
platform's adapter drops the message. Each dropped Nothing is counted (``dropped``), and
``pipelogic status`` shows the count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from pipelogic.errors import DecodeError, SlotGone
from pipelogic.types import Named, Type, codec_for, create_type

__all__ = ["InputDecoder"]


def _buf(frame: Any) -> Any:
    return getattr(frame, "buffer", frame)


def _unpacks(wire: Type, declared: Type | None) -> bool:
    """Whether values of ``wire`` reach an input declared ``declared`` through the adapter."""
    return (
        isinstance(wire, Named)
        and wire.name == "Maybe"
        and not (isinstance(declared, Named) and declared.name == "Maybe")
    )


class InputDecoder:
    def __init__(
        self, vertex: str, wire_types: list[str], declared: list[Type], resolve: Callable[[Any], Any] | None = None
    ) -> None:
        self.vertex = vertex
        # Buffer frames: ``resolve`` maps the shared-memory slots descriptors name.
        self.buf = resolve if resolve is not None else _buf
        types = [create_type(t) for t in wire_types]
        self.codecs = [codec_for(t) for t in types]
        self.unpack = [_unpacks(t, declared[j] if j < len(declared) else None) for j, t in enumerate(types)]
        self.any_unpack = any(self.unpack)
        self.dropped = 0

    def decode(self, per_input: list[list[tuple[Any, ...]]], streaming: bool) -> list[Any] | None:
        """The function's inputs for one tick, or None when the tick is skipped (a Nothing
        on an unpacked input in synchronous mode)."""
        inputs: list[Any] = []
        skip = False
        for j, values in enumerate(per_input):
            codec = self.codecs[j]
            decoded = []
            for v in values:
                try:
                    data = msgpack.unpackb(_buf(v[0]), raw=False, strict_map_key=True)
                    decoded.append(codec.dec(data, [self.buf(b) for b in v[1:]]))
                except SlotGone:
                    raise  # not a bad frame: a tick of a broker that is gone
                except Exception as exc:  # noqa: BLE001 - any bad frame is a DecodeError here
                    raise DecodeError(f"vertex {self.vertex}: input {j}: cannot decode a message: {exc}") from None
            if self.any_unpack and self.unpack[j]:
                kept = [x for x in decoded if x is not None]
                self.dropped += len(decoded) - len(kept)
                skip = skip or (not streaming and len(kept) < len(decoded))
                decoded = kept
            if streaming:
                inputs.append(decoded)
            else:
                if len(decoded) != 1 and not skip:
                    raise DecodeError(
                        f"vertex {self.vertex}: input {j}: expected 1 message per tick, got {len(decoded)}"
                    )
                inputs.append(decoded[0] if decoded else None)
        return None if skip else inputs
