"""``virtual_in`` is bounded in bytes as well as in messages: a camera pushing frames
faster than the pipeline takes them holds a bounded amount of memory."""

import threading

import numpy as np

from pipelogic.cv import Image
from pipelogic.worker._virtual import VirtualInputStream, message_bytes

MB = 1024 * 1024


def test_a_message_weighs_its_buffers_wherever_they_are():
    frame = Image.from_numpy(np.zeros((720, 1280, 3), np.uint8))
    assert message_bytes(frame) >= 720 * 1280 * 3
    assert message_bytes({"frame": frame, "meta": {"n": 1}}) >= 720 * 1280 * 3
    assert message_bytes([b"x" * 1000, "abc"]) >= 1003
    assert message_bytes(np.zeros(10_000, np.uint8)) == 10_000
    assert message_bytes(7) == 64


def test_the_queue_is_full_at_its_bytes_and_an_empty_one_takes_one_however_large():
    q = VirtualInputStream(maxsize=1000, max_bytes=25 * MB)
    q.paced = False  # as run() sets it for a component with inputs: the bounds alone
    q.push(bytes(10 * MB), bytes(10 * MB), blocking=False)
    q.push(bytes(10 * MB), blocking=False)  # 30 MB would be over: dropped
    assert len(q) == 2 and q.dropped == 1 and q.nbytes == 20 * MB
    assert [len(m) for m in q.take(0, 1)] == [10 * MB] and q.nbytes == 10 * MB
    q.take(0, 10)
    q.push(bytes(40 * MB), blocking=False)  # larger than the bound, into an empty queue
    assert len(q) == 1 and q.dropped == 1


def test_a_blocking_push_waits_for_room_in_bytes():
    q = VirtualInputStream(maxsize=1000, max_bytes=15 * MB)
    q.paced = False
    q.push(bytes(10 * MB))
    pushed = threading.Event()

    def camera():
        q.push(bytes(10 * MB))  # waits: 20 MB would be over
        pushed.set()

    t = threading.Thread(target=camera)
    t.start()
    assert not pushed.wait(0.2) and len(q) == 1
    q.take(0, 1)
    assert pushed.wait(5) and len(q) == 1
    t.join(5)


def test_the_bound_in_bytes_is_set_by_the_environment(monkeypatch):
    monkeypatch.setenv("PIPELOGIC_VIRTUAL_QUEUE_BYTES", str(3 * MB))
    assert VirtualInputStream().max_bytes == 3 * MB
    monkeypatch.delenv("PIPELOGIC_VIRTUAL_QUEUE_BYTES")
    assert VirtualInputStream().max_bytes == 64 * MB
