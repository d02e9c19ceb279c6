"""The broker's built-in sources and sinks on their own: a rated source after a restart, a
file sink whose writes fail (nothing counted, nothing torn left behind), and the lock that
keeps a second pipeline from writing the same file."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from backend_stub import builtins
from backend_stub.builtins import Sink, Source
from pipelogic import _faults
from pipelogic.errors import StateError
from pipelogic.types import Atomic

INT = Atomic("Int64")


def test_a_rated_source_resumed_at_its_position_goes_on_at_its_rate():
    """A broker restarted at message 30,007 of a 1000/s source: the next value is due now,
    not after 30 s (the clock counts from the resume, not from value 0)."""
    src = Source(iter(range(100_000)), INT, rate=1000.0, name="numbers")
    src.skip(30_007)
    assert src.produced == 30_007
    assert src.allowance(100.0) == 1
    assert src.allowance(100.5) == 501
    taken = src.take(501)
    assert len(taken) == 501 and src.produced == 30_508
    assert src.allowance(100.5) == 0  # and the rate still holds after the resume


def test_a_rated_source_starts_at_its_rate():
    src = Source(iter(range(10)), INT, rate=10.0)
    assert src.allowance(5.0) == 1
    assert src.allowance(5.35) == 4


def _sink(tmp_path, name: str = "out") -> Sink:
    return Sink("jsonl", tmp_path / "out.jsonl", INT, name)


def test_a_failed_sink_write_counts_nothing_and_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    sink = _sink(tmp_path)
    sink.write([1, 2])
    monkeypatch.setattr(_faults, "_FAIL", {"sink": (1, 2)})
    monkeypatch.setattr(_faults, "_seen", {})
    for _ in range(2):
        with pytest.raises(OSError) as err:
            sink.write([3, 4])
        assert err.value.errno == errno.ENOSPC
        assert (sink.count, sink.offset) == (2, len(b"1\n2\n"))
    sink.write([3, 4])
    sink.close()
    assert (tmp_path / "out.jsonl").read_text() == "1\n2\n3\n4\n"


def test_a_write_torn_by_a_full_disk_is_cut_before_the_next_one(tmp_path, monkeypatch):
    """The disk took half of a write and then refused the rest: those bytes are not a value,
    so they are cut off, and the retried write lands right after the last whole one."""
    sink = _sink(tmp_path)
    sink.write([10])
    real_pwrite = os.pwrite
    calls = []

    def half_then_full(fd, data, offset):
        calls.append(offset)
        if len(calls) == 1:
            return real_pwrite(fd, bytes(data[:3]), offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins.os, "pwrite", half_then_full)
    with pytest.raises(OSError):
        sink.write([111111, 222222])
    monkeypatch.setattr(builtins.os, "pwrite", real_pwrite)
    assert (tmp_path / "out.jsonl").read_text() == "10\n"  # the torn tail is already gone
    sink.write([111111, 222222])
    sink.close()
    assert (tmp_path / "out.jsonl").read_text() == "10\n111111\n222222\n"


def test_hold_backs_off_and_logs_once_per_streak(tmp_path):
    sink = _sink(tmp_path)
    exc = OSError(errno.ENOSPC, "No space left on device")
    assert sink.hold(exc, 10.0) is True
    assert sink.retry_at == pytest.approx(10.1)
    assert sink.hold(exc, 10.1) is False
    assert sink.retry_at == pytest.approx(10.3)
    for _ in range(10):
        sink.hold(exc, 20.0)
    assert sink.retry_at == pytest.approx(22.0)  # at most 2 s between tries
    assert sink.error == "OSError: No space left on device"
    assert sink.writable_again() == 12
    assert (sink.failures, sink.retry_at, sink.error) == (0, 0.0, None)
    sink.close()


def test_close_never_raises(tmp_path, monkeypatch):
    sink = _sink(tmp_path)
    sink.write([1])

    def full(fd, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins.os, "ftruncate", full)
    sink._torn = True
    sink.close()


def test_a_second_pipeline_cannot_write_a_sink_file_in_use(tmp_path):
    """Another process holds the file for its run: refused, naming that process."""
    path = tmp_path / "out.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from backend_stub.builtins import Sink; from pipelogic.types import Atomic; from pathlib import Path;"
            f"s = Sink('jsonl', Path({str(path)!r}), Atomic('Int64'), 'out'); s.write([1]); print('held', flush=True);"
            "sys.stdin.read(); s.close()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StateError) as err:
            Sink("jsonl", path, INT, "out")
        msg = str(err.value)
        assert "sink out" in msg and str(path) in msg and "another running pipeline" in msg
        assert f"pid {holder.pid}" in msg and "backend_stub.builtins" in msg
        assert path.read_text() == "1\n"  # the refused run cut nothing
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
    Sink("jsonl", path, INT, "out").close()  # free again once the other run ended


def test_the_lock_is_released_at_close(tmp_path):
    a = _sink(tmp_path)
    a.write([1])
    a.close()
    b = _sink(tmp_path)
    b.resume(len(b"1\n"), 1)
    b.write([2])
    b.close()
    assert [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().split()] == [1, 2]


@pytest.mark.parametrize(
    "spec",
    [
        {"source": "sequence", "count": 10, "start": 5, "step": 2},
        {"source": "values", "type": "Int64", "values": list(range(30, 40))},
    ],
)
def test_a_source_resumed_far_in_jumps_there_and_makes_the_same_values(tmp_path, spec):
    """A sequence or a list of values passes over what it skips without making it (a
    restart of a long run), and goes on exactly as if it had; past its end it is exhausted."""
    from pipelogic.pipeline import parse_pipeline

    p = parse_pipeline(
        {"name": "s", "components": {"n": spec, "out": {"sink": "null"}}, "connections": ["n -> out"]},
        tmp_path / "pipeline.yml",
    )
    whole = builtins.make_source(p, p.vertices["n"]).take(100)
    for k in (0, 3, 9):
        src = builtins.make_source(p, p.vertices["n"])
        src.skip(k)
        assert src.produced == k and src.take(100) == whole[k:]
    src = builtins.make_source(p, p.vertices["n"])
    src.skip(25)
    assert src.produced == 10 and src.exhausted and src.take(5) == []
