"""``pipelogic status``: one look, JSON, or a live view (``--watch``)."""

from __future__ import annotations

import json
import sys
import time

import click

from pipelogic import protocol as P
from pipelogic.cli._display import status_table
from pipelogic.client import BrokerClient
from pipelogic.errors import PipelogicError

__all__ = ["show_status", "status_json"]


def status_json(st: P.StatusReply) -> str:
    return json.dumps(
        {
            "pipeline": st.pipeline,
            "state": st.state,
            "vertices": st.vertices,
            "streams": st.streams,
            "error": st.error,
            "broker": st.broker,
        },
        indent=2,
    )


def show_status(address: str | None, as_json: bool, watch: float | None, timeout_s: float) -> int:
    """Print the status once, or every ``watch`` seconds until Ctrl-C; exit code 1 if the
    broker does not answer (a watch keeps trying, and says so)."""
    client = BrokerClient(address, timeout_s=timeout_s)
    if watch is None:
        st = client.status()  # no answer: the CLI's one error path says so (exit 1)
        click.echo(status_json(st) if as_json else status_table(st))
        return 0
    tty = sys.stdout.isatty()
    try:
        while True:
            try:
                text = (status_json if as_json else status_table)(client.status())
            except PipelogicError as exc:
                text = f"{exc}; trying again every {watch:g} s"
            stamp = time.strftime("%H:%M:%S")
            if tty and not as_json:
                click.echo("\x1b[H\x1b[2J" + f"{stamp}  (every {watch:g} s, Ctrl-C to stop)\n" + text)
            else:
                click.echo(f"--- {stamp}\n{text}")
            time.sleep(max(0.1, watch))
    except KeyboardInterrupt:
        return 0
