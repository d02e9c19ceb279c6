"""What the unit tests of the scheduler share (a module, not conftest): reading the ticks
that the scheduler's actions send, without sockets."""

from typing import Any

from pipelogic import protocol as P


def sent_ticks(actions: list[Any], epoch: int | None = None, inputs: int = 1) -> list[tuple[Any, Any, Any]]:
    """``(tick, per_input, send)`` of each tick the Sends among ``actions`` carry (to
    ``epoch`` only, if given), in order; ``per_input`` as :func:`protocol.split_values`
    slices it for ``inputs`` streams."""
    out = []
    for a in actions:
        if a.kind == "send" and (epoch is None or a.epoch == epoch):
            msg, payload = P.decode(a.frames)
            if isinstance(msg, P.Ticks):
                out += [(tick, per_input, a) for tick, per_input, _ in P.split_values(msg.layout, payload, inputs)]
    return out
