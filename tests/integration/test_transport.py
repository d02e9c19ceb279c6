"""The zmq seam's context termination: bounded, and finished in the background when it
cannot finish at once (libzmq's I/O thread may sit in a DNS lookup; see transport.term)."""

from __future__ import annotations

import zmq

from pipelogic import transport
from tests.helpers import wait_until


def test_term_of_a_context_with_its_sockets_closed_finishes_at_once():
    ctx = zmq.Context()
    sock, endpoint = transport.bind(ctx, zmq.PULL, "tcp://127.0.0.1:0")
    peer = transport.connect(ctx, zmq.PUSH, endpoint)
    peer.send(b"x")
    assert sock.recv() == b"x"
    peer.close()
    sock.close()
    assert transport.term(ctx) is True
    assert ctx.closed


def test_term_that_cannot_finish_returns_false_and_finishes_when_it_can():
    # An open socket holds zmq_ctx_term as a blocked I/O thread does: term gives up
    # waiting after its bound, and the context still ends once nothing holds it.
    ctx = zmq.Context()
    held = transport.connect(ctx, zmq.PUSH, "tcp://127.0.0.1:9")
    assert transport.term(ctx, timeout_s=0.2) is False
    assert not ctx.closed
    held.close()  # the background term then ends the context
    wait_until(lambda: ctx.closed, 10, "the context to end after its last socket was closed")
