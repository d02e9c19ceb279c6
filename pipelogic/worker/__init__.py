"""pipelogic.worker: the entry point for every Python component.

``run(fn, **options)`` registers the worker function with the runtime and blocks until the
broker closes the worker. Modes (they combine):

- synchronous (default): one message per input per tick, positional arguments in the order
  of component.yml; one output, or a tuple for several;
- stateful: ``initial_state=...`` and a ``state`` parameter; return
  ``{"output": ..., "state": ...}``;
- streaming: ``initial_pull_request=...``; inputs and outputs are lists and the result
  carries ``"pull_request"``;
- virtual input: a parameter named ``virtual_input`` receives messages pushed with
  ``virtual_in.push``; a function whose only parameter it is makes the component a source;
- virtual output: ``use_virtual_output=True``; ``"virtual_output"`` items go, in order, to
  the ``virtual_out.set_on_push`` callback on a runtime thread.

The broker is found at ``$PIPELOGIC_BROKER``; the component directory is
``$PIPELOGIC_COMPONENT_DIR`` or the parent of the ``src/`` holding the main module.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelogic.errors import SnapshotValueError
from pipelogic.state import SourceClasses
from pipelogic.types import InputsPullOption, InputsPullRequest, StreamPullShift
from pipelogic.worker._config import Config
from pipelogic.worker._loan import loan
from pipelogic.worker._session import Session, on_sigterm
from pipelogic.worker._settings import WorkerSettings, main_file
from pipelogic.worker._step import Step, inspect_function
from pipelogic.worker._virtual import VirtualInputStream, VirtualOutputStream, VirtualStreamClosed

__all__ = [
    "InputsPullOption",
    "InputsPullRequest",
    "StreamPullShift",
    "VirtualInputStream",
    "VirtualOutputStream",
    "VirtualStreamClosed",
    "WorkerSettings",
    "config",
    "loan",
    "run",
    "virtual_in",
    "virtual_out",
]

log = logging.getLogger("pipelogic.worker")

config = Config()
"""The component's config values (see :class:`Config`)."""
virtual_in = VirtualInputStream()
"""The worker's virtual input queue (see :class:`VirtualInputStream`)."""
virtual_out = VirtualOutputStream()
"""The worker's virtual output queue (see :class:`VirtualOutputStream`)."""

_NOT_GIVEN: Any = object()
_session: Session | None = None


class _Progress:
    """How far this process got, for ``pipelogic worker`` to tell a failure at start (the
    same every time: not worth a restart) from one while serving."""

    run_called = False
    ticks = 0  # ticks completed by this process, over all its sessions


progress = _Progress()
_lock = threading.Lock()


def _open_session(settings: WorkerSettings | None = None) -> Session:
    global _session
    with _lock:
        if _session is None:
            import pipelogic.cv  # noqa: F401 - decoded catalog values become cv classes

            _session = Session(settings or WorkerSettings.from_env(main_file()))
            _session.bind_config(config)
        return _session


def _load_config() -> None:
    _open_session()


config._loader = _load_config


def _drain_virtual_out(session: Session) -> None:
    """Every virtual output delivered (and acknowledged) before run() returns, within
    PIPELOGIC_VIRTUAL_OUT_DRAIN_S (default 60 s); what is left then fails the worker, or
    with PIPELOGIC_VIRTUAL_OUT_ON_TIMEOUT=lose is a counted loss the broker is told of."""
    import os

    from pipelogic.errors import WorkerError

    wait_s = float(os.environ.get("PIPELOGIC_VIRTUAL_OUT_DRAIN_S", "60"))
    unclaimed = virtual_out.unclaimed()
    if unclaimed:
        log.warning(
            "vertex %s: %d virtual output item(s) were never claimed (no virtual_out.set_on_push() callback): "
            "counted as lost",
            session.vertex,
            unclaimed,
        )
        virtual_out.lost += unclaimed
        session.send_stats()
        return
    lose = os.environ.get("PIPELOGIC_VIRTUAL_OUT_ON_TIMEOUT", "fail") == "lose"
    left = virtual_out.drain(wait_s)
    if virtual_out.error is not None:
        raise virtual_out.error
    if not left:
        return
    what = (
        f"vertex {session.vertex}: {left} virtual output item(s) were not delivered"
        + (" and acknowledged" if virtual_out._with_tag else "")
        + f" within {wait_s:g} s of the end"
    )
    if not lose:
        exc = WorkerError(
            what + " (the virtual_out callback stopped taking or acknowledging them; "
            "PIPELOGIC_VIRTUAL_OUT_ON_TIMEOUT=lose counts them as lost instead)"
        )
        from pipelogic import protocol as P
        from pipelogic.errors import BrokerUnavailable

        try:  # the broker fails the run with it: the vertex is not done until its outputs are
            session.send(P.Failed(session.epoch, session.next_tick, str(exc), "", True))
            exc.reported_to_broker = True
        except BrokerUnavailable:
            pass
        raise exc
    virtual_out.lost = left
    log.error("%s: counted as lost", what)
    session.send_stats()


def run(
    worker_function: Callable[..., Any],
    *,
    use_virtual_output: bool = False,
    initial_state: Any = _NOT_GIVEN,
    initial_pull_request: InputsPullRequest | None = None,
    state_codec: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None,
    _settings: WorkerSettings | None = None,
) -> None:
    """Register ``worker_function`` with the runtime and block until the broker closes.

    The number of positional parameters must match the input streams of component.yml;
    ``state`` and ``virtual_input`` are special parameter names. ``initial_state`` opts into
    stateful mode, ``initial_pull_request`` into streaming mode, ``use_virtual_output`` into
    virtual output. Errors in the function's result (shape, output types) raise with the
    vertex, tick and path; the user's own exception is chained as the cause.

    ``state_codec=(to_plain, from_plain)`` snapshots a state that is not plain data (a
    ``deque``, your own class): ``to_plain(state)`` returns what is stored (None, bool, int,
    float, str, bytes, lists, tuples, dicts, sets, records, numeric numpy arrays) and
    ``from_plain(data)`` rebuilds the state from it. Nothing is ever pickled.
    """
    global _session
    progress.run_called = True
    caller = sys._getframe(1)
    called_at = f"{caller.f_code.co_filename}:{caller.f_lineno}"
    if state_codec is not None and (
        initial_state is _NOT_GIVEN
        or not isinstance(state_codec, tuple)
        or len(state_codec) != 2
        or not all(callable(f) for f in state_codec)
    ):
        raise TypeError("state_codec must be a pair of functions (to_plain, from_plain), given with initial_state")
    if initial_pull_request is not None and not isinstance(initial_pull_request, InputsPullRequest):
        raise TypeError(f"initial_pull_request must be an InputsPullRequest, got {type(initial_pull_request).__name__}")
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, on_sigterm)  # graceful stop, also for `python src/main.py`
    session = _open_session(_settings)
    try:
        spec = session.spec
        mode = inspect_function(
            worker_function,
            len(spec.input_types),
            len(spec.output_types),
            stateful=initial_state is not _NOT_GIVEN,
            streaming=initial_pull_request is not None,
            virtual_output=use_virtual_output,
            component=session.vertex,
        )
        if initial_pull_request is not None:
            initial_pull_request.check_inputs(mode.n_inputs, session.vertex)
        if use_virtual_output and virtual_out._with_tag:
            log.info(
                "vertex %s: the virtual_out callback takes (item, tag): acknowledge mode; give each item back with "
                "virtual_out.ack(tag) (at most %d unacknowledged, then the ticks wait)",
                session.vertex,
                virtual_out.max_unacked,
            )
        from pipelogic.types import create_type

        code = getattr(worker_function, "__code__", None)
        roots = [session.settings.component_dir] + ([Path(code.co_filename).parent] if code is not None else [])
        step = Step(
            worker_function,
            mode,
            [create_type(t) for t in session.welcome.output_types],
            session.vertex,
            None if initial_state is _NOT_GIVEN else initial_state,
            state_codec,
            SourceClasses(roots),
        )
        if mode.stateful:
            try:  # refused here, not after the run has produced output
                step.pack_state(session.vertex)
            except SnapshotValueError as exc:
                raise SnapshotValueError(f"{called_at}: run(initial_state=...): {exc}") from None
        session.serve(step, initial_pull_request, virtual_in, virtual_out)
        _drain_virtual_out(session)
        session.say_goodbye()
    finally:
        progress.ticks += session.ticks_done
        session.close()
        with _lock:
            _session = None
