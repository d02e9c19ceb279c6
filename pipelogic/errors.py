"""The one error tree of pipelogic.

This module is a leaf: it imports nothing of ours, so every layer may raise these.

    PipelogicError
    ├── TypeSystemError            pipelang types and values
    │   ├── TypeParseError         a type expression or literal does not parse
    │   ├── TypeDefinitionError    a named type is unknown or defined twice differently
    │   ├── TypeMismatch           a Python value does not fit a type (carries a path)
    │   ├── DecodeError            bytes or msgpack data do not decode to a valid value
    │   └── IncompatibleTypes      a producer type cannot feed a consumer type
    ├── PullRequestError           a malformed pull request
    ├── ProtocolError              a malformed or unexpected wire message
    │   ├── ProtocolVersionError   the peer speaks another protocol version
    │   └── WrongDirection         a well-formed message sent where it does not go
    ├── DefinitionError            a bad component.yml or pipeline.yml (names file and key)
    ├── ConfigError                a config value is missing, unknown or of the wrong type
    ├── WorkerError                the user's worker function raised (the cause is chained)
    ├── ReturnShapeError           the worker function returned the wrong shape
    ├── OutputTypeError            an output value does not match the declared type
    ├── BrokerUnavailable          the broker did not answer in time
    │   └── HandshakeRefused       the CurveZMQ handshake failed (keys refused or missing)
    ├── VirtualStreamClosed        virtual_in.push() after close(), virtual output after stop()
    ├── KeyFileError               a key folder or key file that cannot be used
    │   └── KeyFileMissing         a key file a client was pointed at does not exist (yet)
    ├── SlotLost                   a shared-memory slot the broker holds cannot be read
    ├── PipelineFailed             a pipeline run stopped with an error
    ├── ContainerError             a container engine operation (image build, compose) failed
    ├── StateError                 durable state (snapshots) cannot be used
    │   ├── SnapshotValueError     a state value cannot be serialised (names type and path)
    │   ├── SnapshotCorrupt        snapshots exist but none is valid
    │   └── StateLocked            another instance holds the state directory
    └── RuntimeBug                 an internal invariant broke: a bug in pipelogic

Internal signals, caught by the worker runtime and never shown to a user: ``BrokerLost``
(the broker went silent or restarted: rejoin), ``SlotGone`` (a tick names a shared-memory slot a newer broker removed: rejoin),
``StopRequested`` (SIGTERM while waiting for the broker), ``CodecUnsupported`` (a type the
generated fast codec does not handle: the generic one is used).

Every PipelogicError carries ``reported_to_broker``: True once the worker told the broker
about it (the broker's report is then the one shown).
"""

from __future__ import annotations

__all__ = [
    "BrokerLost",
    "BrokerUnavailable",
    "CodecUnsupported",
    "ConfigError",
    "ContainerError",
    "DecodeError",
    "DefinitionError",
    "HandshakeRefused",
    "IncompatibleTypes",
    "KeyFileError",
    "KeyFileMissing",
    "OutputTypeError",
    "PipelineFailed",
    "PipelogicError",
    "ProtocolError",
    "ProtocolVersionError",
    "PullRequestError",
    "ReturnShapeError",
    "RuntimeBug",
    "SlotGone",
    "SlotLost",
    "SnapshotCorrupt",
    "SnapshotValueError",
    "StateError",
    "StateLocked",
    "StopRequested",
    "TypeDefinitionError",
    "TypeMismatch",
    "TypeParseError",
    "TypeSystemError",
    "VirtualStreamClosed",
    "WorkerError",
    "WrongDirection",
]


class PipelogicError(Exception):
    """Base of every error pipelogic raises on purpose."""

    reported_to_broker: bool = False  # the worker sent it to the broker (which reports it)


class TypeSystemError(PipelogicError):
    """Something is wrong with a pipelang type or a value of one."""


class TypeParseError(TypeSystemError, ValueError):
    """A type expression or a literal does not parse; the message gives the column."""


class TypeDefinitionError(TypeSystemError, KeyError):
    """A named type is unknown, or a name is redefined with another definition."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TypeMismatch(TypeSystemError, ValueError):
    """A Python value does not fit a type.

    ``path`` is the location inside the value (``boxes[3].rectangle.x``); it is filled in
    while the error propagates out of nested values, so that building it costs nothing
    when values are valid.
    """

    def __init__(self, expected: str, got: str, path: list[str] | None = None) -> None:
        super().__init__(expected, got)
        self.expected = expected
        self.got = got
        self.path: list[str] = path if path is not None else []

    @property
    def where(self) -> str:
        return "".join(self.path).lstrip(".")

    def __str__(self) -> str:
        where = self.where
        prefix = f"{where}: " if where else ""
        return f"{prefix}expected {self.expected}, got {self.got}"


class DecodeError(TypeSystemError, ValueError):
    """Bytes or msgpack data do not decode to a valid value of the expected type.

    The only error a decoder raises, whatever the input.
    """


class IncompatibleTypes(TypeSystemError):
    """A producer's type cannot be assigned to a consumer's; the message says where."""


class PullRequestError(PipelogicError, ValueError):
    """A pull request, option or shift is malformed."""


class ProtocolError(PipelogicError):
    """A wire message is malformed, too large, or not expected here."""


class ProtocolVersionError(ProtocolError):
    """The peer speaks another protocol version."""


class WrongDirection(ProtocolError):
    """A well-formed message of a kind this socket does not take (a worker's Results sent
    to the control socket, say): the sender may be told so."""


class DefinitionError(PipelogicError):
    """A component.yml or pipeline.yml is invalid; ``problems`` lists every finding."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ConfigError(PipelogicError, AttributeError):
    """A config value is missing, unknown, or does not match its declared type."""


class WorkerError(PipelogicError):
    """The user's worker function raised; the original exception is ``__cause__``."""


class ReturnShapeError(PipelogicError, TypeError):
    """The worker function returned a value of the wrong shape for its modes."""


class OutputTypeError(PipelogicError, TypeError):
    """An output value does not match the output type declared in component.yml."""


class BrokerUnavailable(PipelogicError, ConnectionError):
    """The broker did not answer within the timeout."""


class HandshakeRefused(BrokerUnavailable):
    """The security handshake with the broker failed (CurveZMQ): the broker refused this
    client's key, the client has the wrong broker key, or only one side uses keys."""


class PipelineFailed(PipelogicError):
    """A pipeline run stopped because of an error; the message holds the cause."""


class RuntimeBug(PipelogicError):
    """An internal invariant of pipelogic broke. Please report it."""


class ContainerError(PipelogicError):
    """A container operation failed: no engine, a missing base image, a failed build."""


class StateError(PipelogicError):
    """Durable state cannot be written or read."""


class SnapshotValueError(StateError, TypeError):
    """A state value cannot be serialised; the message names its type and path."""


class SnapshotCorrupt(StateError):
    """Snapshot files exist but none passes its checksum: starting from empty state would
    silently lose it, so the worker refuses to start."""


class StateLocked(StateError):
    """Another live worker instance holds the lock of this state directory."""


class VirtualStreamClosed(PipelogicError):
    """push() after close(), or a virtual output after stop()."""


class KeyFileError(PipelogicError):
    """A key folder or key file that cannot be used."""


class KeyFileMissing(KeyFileError):
    """A key file a client was pointed at does not exist (yet: in containers, the broker
    makes the keys when it first starts)."""


class SlotLost(PipelogicError):
    """A slot the broker holds cannot be read (its file was removed or cut short by
    someone else): the values in it are lost, and the run fails saying so."""


# -- internal signals (not errors a user sees) --------------------------------------------------


class BrokerLost(BrokerUnavailable):
    """The broker went silent or restarted: the worker keeps its state and rejoins."""


class SlotGone(Exception):
    """A tick names a slot whose file is gone: a broker that started since removed its
    predecessor's pools, so the tick is from a broker that no longer exists (the worker
    rejoins, and the new broker replays the tick with the payload from its store)."""


class StopRequested(Exception):
    """SIGTERM while waiting for the broker."""


class CodecUnsupported(Exception):
    """A type the generated fast codec does not handle; the generic codec is used."""
