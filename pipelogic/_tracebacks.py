"""Tracebacks that show the user's code only.

An error in a component is about the component: the frames of pipelogic itself, click,
runpy and importlib between the command line and the user's ``main.py`` only bury the
line that matters. These helpers keep the user's frames (and the exception chain), so a
failure is printed once, short, with the user's frame first.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

__all__ = ["is_user_frame", "user_traceback"]

_PACKAGE_DIRS = tuple(str(Path(__file__).resolve().parent.parent / d) + os.sep for d in ("pipelogic", "backend_stub"))


def _library_dirs() -> tuple[str, ...]:
    import click

    return (str(Path(click.__file__).resolve().parent) + os.sep,)


def is_user_frame(filename: str) -> bool:
    """Whether a frame in ``filename`` is the user's: not pipelogic, click, or Python's
    module machinery (``<frozen runpy>``, ``<frozen importlib._bootstrap>``)."""
    if filename.startswith("<frozen ") or filename.startswith(_PACKAGE_DIRS + _library_dirs()):
        return False
    return not (filename.endswith(("/runpy.py", "/importlib/__init__.py")))


def user_traceback(exc: BaseException) -> str:
    """``exc`` formatted like Python does, chained causes included, with only the user's
    frames in each stack. An error raised by pipelogic about the user's value (an output
    of the wrong type) has no user frame: it is just its message."""
    chunks: list[str] = []
    seen: set[int] = set()
    chain: list[tuple[BaseException, str]] = []
    e: BaseException | None = exc
    link = ""
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append((e, link))
        if e.__cause__ is not None:
            e, link = e.__cause__, "The above exception was the direct cause of the following exception:"
        elif e.__context__ is not None and not e.__suppress_context__:
            e, link = e.__context__, "During handling of the above exception, another exception occurred:"
        else:
            e = None
    oldest_first = list(reversed(chain))
    for i, (e, _) in enumerate(oldest_first):
        if i:
            # The link is kept with the earlier exception: how it led to this one.
            chunks.append("\n" + oldest_first[i - 1][1] + "\n\n")
        frames = [f for f in traceback.extract_tb(e.__traceback__) if is_user_frame(f.filename)]
        if frames:
            chunks.append("Traceback (most recent call last):\n")
            chunks.extend(traceback.format_list(frames))
        chunks.extend(traceback.format_exception_only(type(e), e))
    return "".join(chunks).rstrip("\n")
