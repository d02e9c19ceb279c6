"""One hop, ours against raw ZeroMQ, in alternating rounds: ``scripts/bench [--rounds R] [--n N]``

(The package behind ``scripts/bench``, one module per part: ``components`` (the components
the cases run), ``baselines`` (raw pyzmq and the ceilings), ``ours`` (through the broker),
``dora`` (dora-rs), ``rayrun`` (Ray), ``peervenv`` (their virtualenvs), ``cases`` and ``__main__`` (the rounds and the table).).

The baseline is a raw pyzmq PUSH/PULL + msgpack round trip between two processes doing
``x * 2`` (the client keeps K messages in flight). Ours is the same work through the broker:
a ``sequence`` source -> a ``double`` worker process -> a ``null`` sink, the broker's loop on
this process's main thread. Each round runs every case once, in the same order, so a case
and its baseline see the same machine speed; the table gives medians over rounds and the
median of the per-round ratios. Start-up is excluded: ours is timed inside the broker's
loop, from the 10th percent of the messages to the last, as the sink takes them.

Cases:

- small (64-byte msgpack) messages with 1, 16 and 256 in flight (ours: credit 1 / batch 1,
  credit 16 / batch 1, the defaults credit 256 / batch 64). With one in flight, the latency
  per tick is the time between two values reaching the sink (send, worker, result, next
  send), against the raw round trip;
- 1080p BGR frames (6,220,800 bytes), one in flight: raw sends a pooled numpy frame
  zero-copy to a process that returns ``frame * 2`` zero-copy; ours is a camera component
  (a thread pushing pooled frames into ``virtual_in``) -> a worker returning
  ``Image.from_numpy(img.to_numpy() * 2)`` -> a null sink, so each frame crosses two
  worker -> broker -> worker hops: over sockets (``PIPELOGIC_SHM=0``), through shared
  memory (the default on one host), and through shared memory with both components
  building their outputs in ``loan()`` buffers (the camera's grab writes into one, the
  worker multiplies into one);
- stateful with a snapshot every second against stateless, same work (default credit);
- a replicated vertex: a component that sleeps 10 ms a message run as 1, 2 and 4
  instances (``replicas: N``; sleeping needs no core, so the 2-core machine is no limit),
  each against one instance in the same round (``--replica-n`` messages per instance);
- how the broker's cost grows with the pipeline (``graph``): chains of 1, 2, 4 and 8
  ``x * 2`` stages and a fan-out of the source to 4 workers (``--n`` items each): items
  per second at a sink, and the broker's CPU time per item and stage (a stage: one worker
  the item passes; in the fan-out, each of the 4), against the chain of one stage;
- ceilings, to tell the shape's cost from the runtime's: raw pyzmq in our message shape
  (``shaped``: ticks ``[routing id, header, value]`` from a ROUTER, held results on a PUSH,
  headers packed and unpacked, both sides polling; at 1 and 16 in flight), and frames
  through a relay process (``relayed``: three socket crossings per frame, as ours). Each
  has a row against raw, and ours has a row against it;
- the broker's resident memory while one consumer is stalled (``--stall-s``, default 60):
  a source of 1.3 MB values feeding a worker that never answers. Its input buffer is bounded
  in bytes (``buffer_bytes``) as well as in messages, so the memory must stay flat;
- latency (``latency``): 720p frames pushed by a camera (a virtual-input source stamping
  each with its push time) through a model that sleeps 0.2-0.4 s a frame to a stage that
  says how old each frame is: the p50 and p95 push-to-sink time against the model's own
  time (0.3 s), for a camera pushing as fast as it may and a live one at 30 fps keeping the
  latest frame (``--latency-frames`` per run, default 40).

``--with-dora`` adds dora-rs (PyPI ``dora-rs`` and ``dora-rs-cli``, installed into their
own virtualenv under ``build/dora-venv`` on first use; skipped with a message where that
fails) running the same loops as two Python nodes under ``dora run``: a client node keeping
K small messages (or one 1080p frame) in flight to a node returning ``x * 2``, each against
the raw baseline of the same round.

``--with-ray`` adds Ray (PyPI ``ray``, installed into ``build/ray-venv`` on first use): the
same loops through a Ray actor returning ``x * 2`` (small values with 1 and 16 calls in
flight; 1080p numpy frames, which Ray passes through its object store), each against the
raw baseline of the same round.

``--cases`` picks some of the cases (``small``, ``frames``, ``stateful``, ``replicas``, ``graph``,
``latency``, ``memory``). The table is printed and written to ``build/bench.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = __doc__
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the tree under test, when PYTHONPATH does not name one
