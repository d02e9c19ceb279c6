"""One tick of a worker: call the user function and check and encode what it returns.

Pure: no sockets. The session feeds it decoded inputs and sends the frames it returns.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipelogic.errors import (
    OutputTypeError,
    ReturnShapeError,
    SnapshotValueError,
    StateError,
    TypeMismatch,
    WorkerError,
)
from pipelogic.state import SourceClasses, pack_state, unpack_state
from pipelogic.types import InputsPullRequest, Type, codec_for
from pipelogic.types._pack import pack

__all__ = ["Mode", "Step", "TickOutput", "inspect_function"]

_SPECIAL = ("state", "virtual_input")


@dataclass(frozen=True)
class Mode:
    """The modes a worker function runs in (they combine)."""

    n_inputs: int
    n_outputs: int
    stateful: bool = False
    streaming: bool = False
    virtual_input: bool = False
    virtual_output: bool = False

    @property
    def source(self) -> bool:
        """A component with no inputs, fed only by ``virtual_in``."""
        return self.n_inputs == 0 and self.virtual_input

    @property
    def dict_return(self) -> bool:
        return self.stateful or self.streaming or self.virtual_output

    def features(self) -> list[str]:
        names = ("stateful", "streaming", "virtual_input", "virtual_output")
        return [n for n in names if getattr(self, n)]

    def result_keys(self) -> list[str]:
        keys = ["output"] if self.n_outputs else []
        if self.stateful:
            keys.append("state")
        if self.streaming:
            keys.append("pull_request")
        if self.virtual_output:
            keys.append("virtual_output")
        return keys


def inspect_function(
    fn: Callable[..., Any],
    n_inputs: int,
    n_outputs: int,
    *,
    stateful: bool,
    streaming: bool,
    virtual_output: bool,
    component: str,
) -> Mode:
    """Check ``fn``'s signature against the component and the options given to run()."""
    if not callable(fn):
        raise TypeError(f"run() expects a function, got {type(fn).__name__}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot inspect the signature of {fn!r}: {exc}") from None
    params = sig.parameters
    positional = [
        p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _SPECIAL
    ]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params.values())
    required = [p for p in positional if p.default is p.empty]
    # A ``**kwargs`` function receives the special parameters too (``state`` when stateful,
    # ``virtual_input`` when the component has no input streams, which needs it).
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    has_state = "state" in params or (var_kw and stateful)
    has_virtual = "virtual_input" in params or (var_kw and n_inputs == 0)
    where = f"component {component}: worker function {getattr(fn, '__name__', fn)!r}"
    if not varargs and not (len(required) <= n_inputs <= len(positional)):
        raise TypeError(
            f"{where} takes {len(positional)} positional input(s) but component.yml declares {n_inputs} input stream(s)"
        )
    if stateful and not has_state:
        raise TypeError(f"{where}: initial_state was given, so the function must accept a `state` parameter")
    if has_state and not stateful:
        raise TypeError(f"{where} has a `state` parameter: pass initial_state=... to run()")
    if n_inputs == 0 and not has_virtual:
        raise TypeError(f"{where}: a component without input streams must take a `virtual_input` parameter")
    return Mode(n_inputs, n_outputs, stateful, streaming, has_virtual, virtual_output)


def _positional_slots(fn: Callable[..., Any]) -> list[str | None] | None:
    """The positional parameters in order, a special one by its name and an input as None;
    None if no special parameter is positional."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    slots = [
        p.name if p.name in _SPECIAL else None for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return slots if any(s is not None for s in slots) else None


def _bind(slots: list[str | None], inputs: list[Any], special: dict[str, Any]) -> list[Any]:
    """The positional arguments for ``slots``: inputs in order, special values in their
    places (taken out of ``special``) up to the last input; further inputs (``*args``) after."""
    args: list[Any] = []
    left = list(inputs)
    for slot in slots:
        if not left:
            break
        args.append(left.pop(0) if slot is None else special.pop(slot))
    return args + left


@dataclass
class TickOutput:
    """What one tick produced: per output stream, a list of encoded values
    ``(frame, *buffers)``; the next pull request (streaming); virtual-output items."""

    outputs: list[list[tuple[Any, ...]]]
    pull_request: InputsPullRequest | None
    virtual_output: list[Any]


class Step:
    """Calls the worker function for one tick and checks its result."""

    def __init__(
        self,
        fn: Callable[..., Any],
        mode: Mode,
        output_types: list[Type],
        vertex: str,
        initial_state: Any = None,
        state_codec: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None,
        classes: SourceClasses | None = None,
    ) -> None:
        self.fn = fn
        self.state_codec = state_codec
        self.classes = classes  # the component's own dataclasses, NamedTuples and enums
        self.mode = mode
        self.output_codecs = [codec_for(t) for t in output_types]
        self.vertex = vertex
        self.state = initial_state
        self.keys = set(mode.result_keys())
        # Where the special parameters sit among the positional ones: the platform's docs
        # put ``state`` and ``virtual_input`` first (``def f(state, x)``), so they are bound
        # by name wherever they are. None: none is positional, inputs go first as they are.
        self._slots = _positional_slots(fn)
        # Out-of-band buffers: ``place`` puts one into a shared-memory slot and returns
        # the descriptor frame that replaces it (None: it goes over the socket).
        self.place: Callable[[Any], bytes | None] | None = None
        code = getattr(fn, "__code__", None)
        # Errors in what the function returned name it: the traceback has no user frame.
        self.fn_where = (
            f"{getattr(fn, '__qualname__', 'the worker function')} at {code.co_filename}:{code.co_firstlineno}"
            if code is not None
            else "the worker function"
        )

    def pack_state(self, vertex: str) -> bytes:
        """The state as snapshot bytes (through ``state_codec``'s first function, if any)."""
        return pack_state(self._codec(0, self.state, vertex, SnapshotValueError), vertex, self.classes)

    def load_state(self, data: bytes, vertex: str) -> None:
        """Set the state from snapshot bytes (through ``state_codec``'s second function)."""
        try:
            plain = unpack_state(data, self.classes)
        except SnapshotValueError as exc:
            raise SnapshotValueError(f"vertex {vertex}: {exc}") from None
        self.state = self._codec(1, plain, vertex, StateError)

    def _codec(self, which: int, state: Any, vertex: str, error: type[StateError]) -> Any:
        if self.state_codec is None:
            return state
        try:
            return self.state_codec[which](state)
        except Exception as exc:
            what = ("first function (to plain data)", "second function (from plain data)")[which]
            raise error(f"vertex {vertex}: state_codec's {what} raised {type(exc).__name__}: {exc}") from exc

    def call(self, inputs: list[Any], virtual: list[Any] | None, tick: int) -> TickOutput:
        m = self.mode
        kwargs: dict[str, Any] = {}
        if m.stateful:
            kwargs["state"] = self.state
        if m.virtual_input:
            kwargs["virtual_input"] = virtual if virtual is not None else []
        try:
            if self._slots is None:
                result = self.fn(*inputs, **kwargs)
            else:
                result = self.fn(*_bind(self._slots, inputs, kwargs), **kwargs)
        except Exception as exc:
            raise WorkerError(
                f"vertex {self.vertex}: the worker function raised {type(exc).__name__} on tick {tick}: {exc}"
            ) from exc
        return self.check(result, tick)

    def _shape(self, msg: str) -> ReturnShapeError:
        return ReturnShapeError(f"vertex {self.vertex}: {msg} (returned by {self.fn_where})")

    def check(self, result: Any, tick: int) -> TickOutput:
        m = self.mode
        pull: InputsPullRequest | None = None
        virtual_out: list[Any] = []
        if m.dict_return:
            keys = sorted(self.keys)
            if not isinstance(result, dict):
                raise self._shape(
                    f"expected the worker function to return a dict with keys {keys}, got {type(result).__name__}"
                )
            got = set(result)
            if got != self.keys and not (got == self.keys | {"output"} and m.n_outputs == 0):
                missing = sorted(self.keys - got)
                extra = sorted(got - self.keys - {"output"} if m.n_outputs == 0 else got - self.keys)
                parts = []
                if missing:
                    parts.append(f"missing {missing}")
                if extra:
                    parts.append(f"unexpected {extra}")
                raise self._shape(f"expected a dict with keys {keys}, got keys {sorted(got)} ({'; '.join(parts)})")
            output = result.get("output")
            if m.stateful:
                self.state = result["state"]
            if m.streaming:
                pull = result["pull_request"]
                if not isinstance(pull, InputsPullRequest):
                    raise self._shape(f"'pull_request' must be an InputsPullRequest, got {type(pull).__name__}")
                pull.check_inputs(m.n_inputs, self.vertex)
            if m.virtual_output:
                virtual_out = result["virtual_output"]
                if not isinstance(virtual_out, list):
                    raise self._shape(f"'virtual_output' must be a list, got {type(virtual_out).__name__}")
        else:
            output = result
        return TickOutput(self._outputs(output), pull, virtual_out)

    def _outputs(self, output: Any) -> list[list[tuple[Any, ...]]]:
        m = self.mode
        n = m.n_outputs
        if n == 0:
            if output is not None:
                raise self._shape(
                    f"the component declares no outputs, so the function must return "
                    f"{'no output' if m.dict_return else 'None'}, got {type(output).__name__}"
                )
            return []
        if n == 1:
            per_stream = [output]
        else:
            if not isinstance(output, tuple) or len(output) != n:
                got = f"a tuple of {len(output)}" if isinstance(output, tuple) else type(output).__name__
                what = "a tuple of lists" if m.streaming else "a tuple"
                raise self._shape(f"expected {what} of {n} outputs in declared order, got {got}")
            per_stream = list(output)
        encoded = []
        for k, (value, codec) in enumerate(zip(per_stream, self.output_codecs)):
            if m.streaming:
                if not isinstance(value, list):
                    raise self._shape(
                        f"in streaming mode output {k} must be a list of messages, got {type(value).__name__}"
                    )
                values = value
            else:
                values = [value]
            out = []
            for i, v in enumerate(values):
                bufs: list[Any] = []
                try:
                    data = codec.enc(v, bufs)
                except TypeMismatch as err:
                    where = f"output {k}" + (f"[{i}]" if m.streaming else "")
                    raise OutputTypeError(
                        f"vertex {self.vertex}: {where}: {err} (returned by {self.fn_where})"
                    ) from None
                if bufs and self.place is not None:
                    place = self.place
                    bufs = [place(b) or b for b in bufs]
                out.append((pack(data), *bufs))
            encoded.append(out)
        return encoded
