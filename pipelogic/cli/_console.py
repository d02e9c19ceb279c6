"""Where `pipelogic up` writes, and the children whose lines it writes: one line at a time
from many threads (each child's stdout and stderr has a reader), a progress line redrawn
on a terminal, each child's lines behind its prefix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from pipelogic import protocol as P

__all__ = ["Console", "LogFile"]

LOG_MAX_BYTES = 1 << 20  # a worker's log file is rotated (to NAME.log.1) past this


class LogFile:
    """A child's lines kept in a file of the run (``logs/VERTEX.log``), for the web view
    and for a person after the run: appended across restarts, rotated once past
    LOG_MAX_BYTES. A file that cannot be written is given up on, never the child."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.fh: IO[str] | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(path, "a", encoding="utf-8", errors="replace")
        except OSError:
            self.fh = None

    def write(self, line: str) -> None:
        with self.lock:
            if self.fh is None:
                return
            try:
                self.fh.write(line + "\n")
                self.fh.flush()
                if self.fh.tell() > LOG_MAX_BYTES:
                    self.fh.close()
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                    self.fh = open(self.path, "a", encoding="utf-8", errors="replace")
            except OSError:
                self.fh = None

    def close(self) -> None:
        with self.lock:
            if self.fh is not None:
                self.fh.close()
                self.fh = None


_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """In each child: its own process group, and SIGTERM when `up` dies (Linux)."""
    os.setpgrp()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the children notice the broker's silence instead


class Console:
    """``tty``: redraw the progress line in place (else print it as a line of its own)."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.lock = threading.Lock()
        self.status_shown = False
        self.final_status: P.StatusReply | None = None  # what the broker printed as it ended
        self.pumps: list[threading.Thread] = []  # the readers of the broker's output

    def echo(self, line: str, err: bool = False) -> None:
        stream = sys.stderr if err else sys.stdout
        with self.lock:
            if self.status_shown and self.tty:
                sys.stdout.write("\r\x1b[K")
                self.status_shown = False
            stream.write(line + "\n")
            stream.flush()

    def show(self, line: str) -> None:
        with self.lock:
            if self.tty:
                sys.stdout.write("\r\x1b[K" + line[:200])
                self.status_shown = True
            else:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def _pump(self, stream: IO[str], prefix: str, err: bool, log: LogFile | None = None) -> None:
        for line in iter(stream.readline, ""):
            if log is not None:
                log.write(line.rstrip("\n"))
            if line.startswith("PIPELOGIC_FINAL="):
                try:
                    d = json.loads(line.split("=", 1)[1])
                    self.final_status = P.StatusReply(
                        d["pipeline"], d["state"], d["vertices"], d["streams"], d["error"], d.get("broker")
                    )
                except (ValueError, KeyError, TypeError):
                    pass
                continue
            self.echo(f"{prefix}{line.rstrip()}", err)
        stream.close()

    def spawn(
        self,
        args: list[str],
        env: dict[str, str],
        prefix: str,
        cwd: Path,
        first_line: Callable[[str], None] | None = None,
        log: LogFile | None = None,
    ) -> subprocess.Popen[str]:
        """Start a child whose lines are echoed behind ``prefix``. ``first_line``: the
        child's first stdout line goes there instead (the broker says where it listens),
        its other stdout lines are echoed bare, and its readers are joined before `up`'s
        final report (:attr:`pumps`). ``log``: every line is also kept there."""
        proc = subprocess.Popen(
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=cwd,
            preexec_fn=_child_setup,
        )
        assert proc.stdout is not None and proc.stderr is not None
        if first_line is not None:
            first_line(proc.stdout.readline().strip())
        for stream, pre, err in (
            (proc.stdout, prefix if first_line is None else "", False),
            (proc.stderr, prefix, True),
        ):
            t = threading.Thread(target=self._pump, args=(stream, pre, err, log), daemon=True)
            t.start()
            if first_line is not None:
                self.pumps.append(t)
        return proc
