"""The worker's connection to the broker: handshake, data sockets and the tick loop.

Threads: the main thread owns the tick and result sockets and runs the user function;
a heartbeat thread owns a socket of its own (zmq sockets are not shared between threads),
so a long-running function keeps the worker visibly alive.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from pipelogic import protocol as P
from pipelogic import transport
from pipelogic.component import ComponentSpec, load_component
from pipelogic.errors import (
    BrokerUnavailable,
    DecodeError,
    OutputTypeError,
    ProtocolError,
    PullRequestError,
    ReturnShapeError,
    WorkerError,
)
from pipelogic.pulling import take_shift
from pipelogic.types import InputsPullRequest, codec_for, create_type
from pipelogic.worker._config import Config
from pipelogic.worker._step import Mode, Step
from pipelogic.worker._virtual import VirtualInputStream, VirtualOutputStream

__all__ = ["Session", "WorkerSettings"]

log = logging.getLogger("pipelogic.worker")

_TICK_ERRORS = (WorkerError, ReturnShapeError, OutputTypeError, DecodeError, PullRequestError)


@dataclass
class WorkerSettings:
    """Where a worker finds its broker, its component and its state directory."""

    broker: str
    component_dir: Path
    vertex: str | None = None
    state_dir: Path = Path(".pipelogic/state")
    connect_timeout_s: float = 60.0

    @classmethod
    def from_env(cls, main_file: str | None = None) -> WorkerSettings:
        env = os.environ
        cdir = env.get("PIPELOGIC_COMPONENT_DIR")
        if cdir:
            component_dir = Path(cdir)
        elif main_file:
            component_dir = Path(main_file).resolve().parent.parent
        else:
            component_dir = Path.cwd()
        return cls(
            broker=transport.broker_address(),
            component_dir=component_dir,
            vertex=env.get("PIPELOGIC_COMPONENT") or None,
            state_dir=Path(env.get("PIPELOGIC_STATE_DIR", ".pipelogic/state")),
            connect_timeout_s=float(env.get("PIPELOGIC_CONNECT_TIMEOUT_S", "60")),
        )


class Session:
    """One incarnation of a worker: from Hello to Goodbye."""

    def __init__(self, settings: WorkerSettings, spec: ComponentSpec | None = None) -> None:
        self.settings = settings
        self.spec = spec if spec is not None else load_component(settings.component_dir)
        self.vertex = settings.vertex or self.spec.name
        self.ctx = zmq.Context()
        self.ticks_done = 0
        self._closed = False
        self.welcome = self._handshake()
        self.epoch = self.welcome.epoch
        self.pull: zmq.Socket | None = None
        self.push: zmq.Socket | None = None
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        self.virtual_in: VirtualInputStream | None = None

    # -- handshake -------------------------------------------------------------------------

    def _handshake(self) -> P.Welcome:
        s = self.settings
        hello = P.Hello(
            vertex=self.vertex,
            instance=uuid.uuid4().hex,
            pid=os.getpid(),
            features=[],
            inputs=len(self.spec.input_types),
            outputs=len(self.spec.output_types),
        )
        frames = transport.request(self.ctx, s.broker, P.encode(hello), s.connect_timeout_s)
        if frames is None:
            raise BrokerUnavailable(
                f"vertex {self.vertex}: no answer from the broker at {s.broker} within "
                f"{s.connect_timeout_s:g} s (set PIPELOGIC_BROKER?)"
            )
        msg, _ = P.decode(frames)
        if isinstance(msg, P.Refuse):
            raise ProtocolError(f"vertex {self.vertex}: the broker refused this worker: {msg.reason}")
        if not isinstance(msg, P.Welcome):
            raise ProtocolError(f"vertex {self.vertex}: expected welcome from the broker, got {msg.KIND}")
        if len(msg.input_types) != len(self.spec.input_types) or len(msg.output_types) != len(self.spec.output_types):
            raise ProtocolError(
                f"vertex {self.vertex}: the broker's pipeline has {len(msg.input_types)} input(s) and "
                f"{len(msg.output_types)} output(s) for this vertex, component.yml declares "
                f"{len(self.spec.input_types)} and {len(self.spec.output_types)}"
            )
        return msg

    def bind_config(self, config: Config) -> None:
        config._bind(self.spec.config_schema, self.welcome.config, self.welcome.config_version)

    # -- data ------------------------------------------------------------------------------

    def open_data(self) -> None:
        b = self.settings.broker
        self.pull = transport.connect(self.ctx, zmq.PULL, transport.peer_endpoint(b, self.welcome.tick_endpoint))
        self.push = transport.connect(self.ctx, zmq.PUSH, transport.peer_endpoint(b, self.welcome.result_endpoint))
        self._hb_thread = threading.Thread(target=self._heartbeat, name="pipelogic-heartbeat", daemon=True)
        self._hb_thread.start()

    def send(self, msg: P.Message, payload: list[Any] | None = None) -> None:
        assert self.push is not None
        transport.send(self.push, P.encode(msg, payload or ()))

    def stats(self) -> dict[str, Any]:
        vin = self.virtual_in
        return {
            "ticks": self.ticks_done,
            "virtual_dropped": vin.dropped if vin is not None else 0,
            "virtual_queued": len(vin) if vin is not None else 0,
        }

    def send_stats(self) -> None:
        """A heartbeat from the main thread, so final counters reach the broker."""
        self.send(P.Heartbeat(self.epoch, self.stats()))

    def _heartbeat(self) -> None:
        ep = transport.peer_endpoint(self.settings.broker, self.welcome.result_endpoint)
        sock = transport.connect(self.ctx, zmq.PUSH, ep)
        interval = self.welcome.heartbeat_ms / 1000.0
        try:
            while not self._hb_stop.wait(interval):
                try:
                    sock.send_multipart(P.encode(P.Heartbeat(self.epoch, self.stats())), flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass  # broker not reachable right now; the next beat will tell
        finally:
            sock.close(0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hb_stop.set()
        if self._hb_thread is not None:
            self._hb_thread.join(5)
        for s in (self.pull, self.push):
            if s is not None:
                s.close(0)
        self.ctx.term()

    # -- the loop --------------------------------------------------------------------------

    def serve(self, step: Step, pull_request: InputsPullRequest | None,
              virtual_in: VirtualInputStream, virtual_out: VirtualOutputStream) -> None:
        """Run ticks until the broker closes this worker."""
        mode = step.mode
        self.virtual_in = virtual_in
        self.step = step
        self.vout = virtual_out
        self.pull_request = pull_request
        self.input_codecs = [codec_for(create_type(t)) for t in self.welcome.input_types]
        self.on_error = str(self.welcome.settings.get("on_error", "fail"))
        self.open_data()
        self.send(P.Ready(self.epoch, mode.features(), pull_request.to_wire() if pull_request else None))
        assert self.pull is not None
        while True:
            frames = transport.recv(self.pull)
            try:
                msg, payload = P.decode(frames)
            except ProtocolError as exc:
                log.error("vertex %s: dropped a malformed message from the broker: %s", self.vertex, exc)
                continue
            if isinstance(msg, P.Ticks):
                if msg.epoch != self.epoch:
                    continue
                if self._ticks(msg, payload):
                    return
            elif isinstance(msg, P.ConfigPush):
                self._config(msg)
            elif isinstance(msg, P.Close):
                return
            else:
                log.warning("vertex %s: unexpected %s from the broker", self.vertex, msg.KIND)

    def _config(self, msg: P.ConfigPush) -> None:
        from pipelogic.worker import config

        config._apply(msg.values, msg.version)
        self.send(P.ConfigApplied(self.epoch, msg.version))

    def _poll_control(self) -> bool:
        """While waiting on the virtual queue: handle config and close. True on close."""
        assert self.pull is not None
        while self.pull.poll(0):
            msg, _ = P.decode(transport.recv(self.pull))
            if isinstance(msg, P.Close):
                return True
            if isinstance(msg, P.ConfigPush):
                self._config(msg)
        return False

    def _virtual_take(self, skip: int, min_count: int, max_count: int) -> list[Any] | None:
        """Wait for ``skip + min_count`` queued virtual messages, then take. None if the
        broker closed us while waiting; a short list if the queue closed first."""
        vin = self.virtual_in
        assert vin is not None
        while not vin.wait(skip + min_count, 0.05):
            if self._poll_control():
                return None
        return vin.take(skip, max_count)

    def _source_take(self) -> list[Any] | bool | None:
        """A source tick's virtual input; None if closed by the broker while waiting, False
        when the virtual stream is finished."""
        vin = self.virtual_in
        assert vin is not None
        while True:
            if self.step.mode.streaming and self.pull_request is not None:
                for opt in self.pull_request.options:
                    vs = opt.virtual_shift
                    t = take_shift(len(vin), vs) if vs is not None else None
                    if t is not None and sum(t) > 0:
                        return vin.take(*t)
            elif len(vin) >= 1:
                return vin.take(0, 1)
            if vin.closed:
                return False  # closed, and what is left can never fire
            if not vin.wait(len(vin) + 1, 0.05) and self._poll_control():
                return None

    def _ticks(self, msg: P.Ticks, payload: list[Any]) -> bool:
        """Run a batch of ticks; True when the worker should stop."""
        mode: Mode = self.step.mode
        entries = P.split_values(msg.layout, payload, mode.n_inputs)
        layout: list[Any] = []
        frames: list[Any] = []
        stop = False
        for tick, per_input, extra in entries:
            virtual: list[Any] | None = None
            if mode.source:
                got = self._source_take()
                if got is None:
                    stop = True
                    break
                if got is False:
                    if layout:
                        self.send(P.Results(self.epoch, layout), frames)
                        layout, frames = [], []
                    self.send_stats()
                    self.send(P.Finished(self.epoch))
                    return self._wait_close()
                virtual = got  # type: ignore[assignment]
            elif mode.virtual_input:
                if mode.streaming and isinstance(extra, list) and len(extra) == 3:
                    virtual = self._virtual_take(*extra)
                    if virtual is None:
                        stop = True
                        break
                else:
                    assert self.virtual_in is not None
                    virtual = self.virtual_in.take(0, len(self.virtual_in))
            try:
                inputs = self._decode_inputs(per_input, mode)
                out = self.step.call(inputs, virtual, tick)
                if out.virtual_output:
                    self.vout.emit(out.virtual_output)
                if self.vout.error is not None:
                    raise WorkerError(
                        f"vertex {self.vertex}: the virtual_out callback raised "
                        f"{type(self.vout.error).__name__}: {self.vout.error}"
                    ) from self.vout.error
            except _TICK_ERRORS as exc:
                fatal = self.on_error != "skip" or isinstance(exc, (DecodeError, PullRequestError))
                tb = "".join(traceback.format_exception(exc.__cause__ or exc))
                if layout:
                    self.send(P.Results(self.epoch, layout), frames)
                    layout, frames = [], []
                self.send(P.Failed(self.epoch, tick, str(exc), tb, fatal))
                if fatal:
                    raise
                log.warning("%s (tick %d skipped, inputs sent to the dead-letter file)", exc, tick)
                pr = self.pull_request.to_wire() if self.pull_request is not None else None
                layout.append([tick, [[] for _ in range(mode.n_outputs)], pr])
                self.ticks_done += 1
                continue
            if out.pull_request is not None:
                self.pull_request = out.pull_request
            counts = []
            for values in out.outputs:
                counts.append([len(v) - 1 for v in values])
                for v in values:
                    frames.extend(v)
            layout.append([tick, counts, out.pull_request.to_wire() if out.pull_request is not None else None])
            self.ticks_done += 1
            if mode.source:  # live sources: no batching, every tick goes out at once
                self.send(P.Results(self.epoch, layout), frames)
                layout, frames = [], []
        if layout:
            self.send(P.Results(self.epoch, layout), frames)
        return stop

    def _decode_inputs(self, per_input: list[list[tuple[Any, ...]]], mode: Mode) -> list[Any]:
        inputs = []
        for j, values in enumerate(per_input):
            codec = self.input_codecs[j]
            decoded = []
            for v in values:
                try:
                    data = _unpack(v[0])
                    decoded.append(codec.dec(data, [_buf(b) for b in v[1:]]))
                except Exception as exc:  # noqa: BLE001 - any bad frame is a DecodeError here
                    raise DecodeError(f"vertex {self.vertex}: input {j}: cannot decode a message: {exc}") from None
            if mode.streaming:
                inputs.append(decoded)
            else:
                if len(decoded) != 1:
                    raise DecodeError(f"vertex {self.vertex}: input {j}: expected 1 message per tick, got {len(decoded)}")
                inputs.append(decoded[0])
        return inputs

    def _wait_close(self) -> bool:
        assert self.pull is not None
        while True:
            msg, _ = P.decode(transport.recv(self.pull))
            if isinstance(msg, P.Close):
                return True


def _buf(frame: Any) -> Any:
    return getattr(frame, "buffer", frame)


def _unpack(frame: Any) -> Any:
    import msgpack

    return msgpack.unpackb(_buf(frame), raw=False, strict_map_key=True)


def main_file() -> str | None:
    """The file of the ``__main__`` module (the component's src/main.py)."""
    main = sys.modules.get("__main__")
    return getattr(main, "__file__", None)
