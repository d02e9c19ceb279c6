"""Handshake rate limits (issue 14): a bucket per vertex, strangers sharing one."""

from backend_stub.admission import HelloLimiter


def test_handshakes_are_limited_per_vertex_and_refill_with_time():
    lim = HelloLimiter(["a", "b"], rate=5.0, burst=10.0)
    assert sum(lim.allow("a", 0.0) for _ in range(50)) == 10  # the burst, then nothing
    assert lim.allow("b", 0.0)  # another vertex has its own bucket
    assert not lim.allow("a", 0.1)  # half a token
    assert lim.allow("a", 0.3)  # 5 a second
    assert sum(lim.allow(f"stranger{i}", 0.0) for i in range(100)) == 10  # one bucket for all unknown names
