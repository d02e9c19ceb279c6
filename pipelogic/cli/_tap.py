"""``pipelogic tap VERTEX[.i]``: print the messages of an output stream as they flow."""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from pathlib import Path

import click

from pipelogic import protocol as P
from pipelogic.client import BrokerClient
from pipelogic.errors import BrokerUnavailable, PipelogicError
from pipelogic.jsonform import to_display, to_json
from pipelogic.pictures import encode_jpeg, encode_png, have_jpeg, pictures
from pipelogic.types import create_type, decode_frame

__all__ = ["PictureSaver", "parse_stream", "tap"]

_STREAM = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)(?:\.(\d+))?$")
POLL_S = 0.1


def parse_stream(text: str) -> tuple[str, int]:
    m = _STREAM.match(text.strip())
    if m is None:
        raise click.BadParameter(f"expected VERTEX or VERTEX.INDEX, got {text!r}", param_hint="STREAM")
    return m.group(1), int(m.group(2) or 0)


def _values(reply: P.TapReply, payload: list[object]) -> list[tuple[object, list[object]]]:
    out, pos = [], 0
    for n in reply.layout:
        if type(n) is not int or n < 0 or pos + 1 + n > len(payload):
            raise PipelogicError(f"tap: malformed reply layout {reply.layout!r:.100}")
        out.append((payload[pos], payload[pos + 1 : pos + 1 + n]))
        pos += 1 + n
    return out


class PictureSaver:
    """``tap --save DIR``: each value's Images and DepthImages written to DIR as numbered
    files (``000001.png``; ``000001-1.png`` for a value's second picture), full size."""

    def __init__(self, folder: Path, jpeg: bool) -> None:
        if jpeg and not have_jpeg():
            raise click.UsageError("--jpeg needs Pillow: pip install 'pipelogic[ui]' (PNG needs nothing)")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.UsageError(f"--save {folder}: {exc}") from None
        self.folder = folder
        self.jpeg = jpeg
        self.saved = 0

    def save(self, number: int, value: object) -> list[str]:
        """Write the pictures of the ``number``-th value shown; their file names."""
        names = []
        for k, pic in enumerate(pictures(value)):
            name = f"{number:06d}{'-' + str(k) if k else ''}.{'jpg' if self.jpeg else 'png'}"
            (self.folder / name).write_bytes(encode_jpeg(pic) if self.jpeg else encode_png(pic))
            names.append(name)
        self.saved += len(names)
        return names


def tap(address: str | None, stream: str, count: int | None, raw: bool, saver: PictureSaver | None = None) -> int:
    """Poll the broker and print each value as a JSON line (the jsonl form; ``raw``: the
    undecoded frames, base64; with ``saver``, long bytes shown by their size and each
    value's pictures written to files). Losses (the tap fell behind) go to stderr, counted.
    Ends after ``count`` values, when the stream ends, or on Ctrl-C (exit 0); exit 1 if the
    broker goes away."""
    vertex, index = parse_stream(stream)
    client = BrokerClient(address, timeout_s=2.0)
    reply, _ = client.tap(vertex, index, -1)
    t = create_type(reply.type)
    cursor, shown, missed = reply.next, 0, 0
    click.echo(f"tap: {vertex}.{index} ({reply.type}) from message {cursor}; Ctrl-C to stop", err=True)
    out = sys.stdout
    try:
        while count is None or shown < count:
            try:
                reply, payload = client.tap(vertex, index, cursor, 1000 if count is None else min(1000, count - shown))
            except BrokerUnavailable:
                click.echo(
                    f"tap: the broker at {client.address} is gone (the pipeline ended or stopped); "
                    f"{shown} message(s) shown",
                    err=True,
                )
                return 0 if shown else 1
            if reply.dropped:
                missed += reply.dropped
                click.echo(
                    f"tap: {reply.dropped} message(s) not shown: the tap fell behind ({missed} in all)", err=True
                )
            for frame, bufs in _values(reply, payload):
                if raw:
                    line = json.dumps([base64.b64encode(bytes(f)).decode("ascii") for f in (frame, *bufs)])  # type: ignore[call-overload]
                elif saver is not None:
                    value = decode_frame(frame, t, bufs)  # type: ignore[arg-type]
                    files = saver.save(shown + 1, value)
                    line = json.dumps({"value": to_display(value), "pictures": files})
                else:
                    line = json.dumps(to_json(decode_frame(frame, t, bufs)))  # type: ignore[arg-type]
                out.write(line + "\n")
                shown += 1
                if count is not None and shown >= count:
                    break
            out.flush()
            cursor = reply.next
            if reply.ended:
                click.echo(f"tap: {vertex}.{index} ended; {shown} message(s) shown", err=True)
                return 0
            if not reply.layout:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `pipelogic tap x | head`
        return 0
    return 0
