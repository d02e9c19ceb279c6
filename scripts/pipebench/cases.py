"""The cases that take more than one run per round."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .baselines import raw, relayed
from .containers import compose_frames
from .dora import dora_run
from .ours import graph, latency, ours
from .rayrun import ray_run

Note = Callable[..., None]


def frames_case(
    base: Path, comps: dict[str, Path], frames: int, r: int, note: Note, dora: Path | None, ray: Path | None = None
) -> None:
    """1080p frames, one in flight: raw zmq, ours over sockets, ours over shared memory."""
    source = {"path": str(comps["camera"]), "config": {"frames": frames}}
    base_rate, _ = raw(frames, 1, frames=True)
    sockets, _ = ours(base, comps, frames, 1, 1, worker="frame_double", source=source, shm=False)
    note("1080p frames, 1 in flight, sockets", raw=base_rate, ours=sockets, ratio=sockets / base_rate)
    shared, _ = ours(base, comps, frames, 1, 1, worker="frame_double", source=source, shm=True)
    note("1080p frames, 1 in flight, shared memory", raw=base_rate, ours=shared, ratio=shared / base_rate)
    durable, _ = ours(base, comps, frames, 1, 1, worker="frame_double", source=source, shm=True, store=True)
    note(
        "1080p frames, 1 in flight, shared memory, with the recovery store (as `up` runs it)",
        raw=base_rate,
        ours=durable,
        ratio=durable / base_rate,
    )
    note(
        "1080p frames, 1 in flight, shared memory: with the store against in memory",
        base="in memory",
        raw=shared,
        ours=durable,
        ratio=durable / shared,
    )
    loaned, _ = ours(
        base,
        comps,
        frames,
        1,
        1,
        worker="frame_double_loan",
        shm=True,
        source={"path": str(comps["camera_loan"]), "config": {"frames": frames}},
    )
    note(
        "1080p frames, 1 in flight, shared memory, outputs made in loan() buffers",
        raw=base_rate,
        ours=loaned,
        ratio=loaned / base_rate,
    )
    relay = relayed(frames)
    note(
        "ceiling: 1080p frames, 1 in flight, through a relay process (three socket crossings)",
        raw=base_rate,
        ours=relay,
        ratio=relay / base_rate,
    )
    note(
        "1080p frames, 1 in flight, sockets: ours against the ceiling",
        base="ceiling",
        raw=relay,
        ours=sockets,
        ratio=sockets / relay,
    )
    print(
        f"round {r + 1}: frames: raw {base_rate:,.1f}/s, through a relay {relay:,.1f}/s, "
        f"ours over sockets {sockets:,.1f}/s "
        f"({sockets / base_rate:.2f}x), over shared memory {shared:,.1f}/s ({shared / base_rate:.2f}x; "
        f"with the store {durable:,.1f}/s), "
        f"with loans {loaned:,.1f}/s ({loaned / base_rate:.2f}x)",
        flush=True,
    )
    if ray is not None and (got_ray := ray_run(ray, base, frames, 1, frames=True)) is not None:
        theirs = got_ray[0]
        note("Ray: 1080p frames, 1 in flight", raw=base_rate, ours=theirs, ratio=theirs / base_rate)
        print(f"round {r + 1}: Ray frames: {theirs:,.1f}/s ({theirs / base_rate:.2f}x raw)", flush=True)
    if dora is not None:
        got = dora_run(dora, base, frames, 1, frames=True)
        if got is None:
            return
        theirs = got[0]
        note("dora-rs: 1080p frames, 1 in flight", raw=base_rate, ours=theirs, ratio=theirs / base_rate)
        print(f"round {r + 1}: dora-rs frames: {theirs:,.1f}/s ({theirs / base_rate:.2f}x raw)", flush=True)


def compose_case(base: Path, comps: dict[str, Path], frames: int, r: int, note: Note) -> None:
    """1080p frames, one in flight, through `pipelogic compose` with keys on (camera, worker
    and stamp each in a container, the broker in another): over the encrypted sockets,
    through a shared-memory volume that only each producer's consumers may read, and the
    same with the components building their outputs in ``loan()`` buffers."""
    base_rate, _ = raw(frames, 1, frames=True)
    # The rate is the broker's: the sink's, from the loop turns where it first and last
    # moved. Runs of a few seconds keep the containers' first frames (their warm-up) a
    # small part of it: 3,000 frames through shared memory, 600 over the sockets (20 s).
    sockets, _ = compose_frames(base, comps, max(frames, 600), shm=False)
    frames = max(frames, 3000)
    note(
        "1080p frames, 1 in flight, compose with keys, sockets", raw=base_rate, ours=sockets, ratio=sockets / base_rate
    )
    shared, _ = compose_frames(base, comps, frames, shm=True)
    note(
        "1080p frames, 1 in flight, compose with keys, shared memory",
        raw=base_rate,
        ours=shared,
        ratio=shared / base_rate,
    )
    loaned, _ = compose_frames(base, comps, frames, shm=True, loan=True)
    note(
        "1080p frames, 1 in flight, compose with keys, shared memory, outputs made in loan() buffers",
        raw=base_rate,
        ours=loaned,
        ratio=loaned / base_rate,
    )
    print(
        f"round {r + 1}: compose with keys: raw {base_rate:,.1f}/s, sockets {sockets:,.1f}/s "
        f"({sockets / base_rate:.2f}x), shared memory {shared:,.1f}/s ({shared / base_rate:.2f}x), "
        f"with loan() {loaned:,.1f}/s ({loaned / base_rate:.2f}x)",
        flush=True,
    )


def stateful_case(base: Path, comps: dict[str, Path], n: int, r: int, note: Note) -> None:
    stateless, _ = ours(base, comps, n, 256, 64)
    stateful, _ = ours(base, comps, n, 256, 64, worker="acc", extra={"snapshot": "1 s"})
    note("stateful (1 s snapshots) vs stateless", raw=stateless, ours=stateful, ratio=stateful / stateless)
    print(
        f"round {r + 1}: stateful: stateless {stateless:,.0f}/s, stateful {stateful:,.0f}/s "
        f"({stateful / stateless:.2f}x)",
        flush=True,
    )


def replicas_case(base: Path, comps: dict[str, Path], replica_n: int, r: int, note: Note) -> None:
    one = 0.0
    for k in (1, 2, 4):
        rate, _ = ours(base, comps, replica_n * k, 256, 64, worker="sleep10", extra={"replicas": k})
        one = one or rate
        note(f"replicas: {k} instance(s) of a 10 ms component", raw=one, ours=rate, ratio=rate / one)
        print(f"round {r + 1}: replicas {k}: {rate:,.1f}/s ({rate / one:.2f}x one instance)", flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def graph_case(base: Path, comps: dict[str, Path], n: int, r: int, note: Note) -> None:
    """Chains of 1, 2, 4 and 8 stateless stages and a fan-out of the source to 4 workers,
    through one broker: items per second at a sink and the broker's CPU per item and
    stage, each against the chain of one stage (it should not grow with the stages)."""
    first: tuple[float, float] | None = None
    for label, stages, fanout in [*((f"a chain of {k}", k, 0) for k in (1, 2, 4, 8)), ("a fan-out to 4", 0, 4)]:
        rate, us = graph(base, comps, n, stages, fanout)
        first = first or (rate, us)
        note(f"graph: {label}", raw=first[0], ours=rate, ratio=us / first[1], raw_us=first[1], ours_us=us)
        print(f"round {r + 1}: {label}: {rate:,.0f} items/s, {us:.1f} µs of broker CPU per item and stage", flush=True)


MODEL_S = 0.3  # the latency case's model: 0.2-0.4 s a frame, 0.3 s on average


def latency_case(base: Path, comps: dict[str, Path], frames: int, r: int, note: Note) -> None:
    """Push-to-sink latency of 720p frames behind a 0.2-0.4 s model, against the model's
    own time: a camera pushing as fast as it may (every frame delivered; the model as one
    instance and as two), and a live one at 30 fps keeping the latest frame (stale ones
    dropped and counted)."""
    for label, fps, keep, replicas in (
        ("frame latency behind a 0.2-0.4 s model, a camera pushing as fast as it may", 0.0, "", 1),
        ("frame latency behind a 0.2-0.4 s model as 2 replicas, a camera pushing as fast as it may", 0.0, "", 2),
        ("frame latency behind a 0.2-0.4 s model, a live 30 fps camera keeping the latest", 30.0, "latest", 1),
    ):
        ages, dropped = latency(base, comps, frames, fps, keep, replicas)
        p50, p95 = pct(ages, 0.5), pct(ages, 0.95)
        note(label, base="the model's own time", unit="s", raw=MODEL_S, ours=p50, ratio=p50 / MODEL_S, ours95=p95)
        print(
            f"round {r + 1}: {label}: p50 {p50:.2f} s, p95 {p95:.2f} s ({p50 / MODEL_S:.1f} model times), "
            f"{len(ages)} delivered, {dropped} dropped by the camera",
            flush=True,
        )


def ui_case(base: Path, comps: dict[str, Path], n: int, r: int, note: Note) -> None:
    """The web view's cost on the hot path: small messages at 16 in flight and with the
    defaults, without the view, with it served and nobody watching, and with a page's
    traffic, one after the other in the same round (each against the run without it). Ten
    times ``n`` messages a run: the page polls every 0.3 s, so a run must last seconds for
    its traffic, not its start, to be what is measured."""
    n *= 10
    for label, credit, batch in [("16 in flight", 16, 1), ("256 in flight (defaults)", 256, 64)]:
        plain, _ = ours(base, comps, n, credit, batch)
        idle, _ = ours(base, comps, n, credit, batch, ui="idle")
        open_, _ = ours(base, comps, n, credit, batch, ui="watching")
        note(
            f"web view served, nobody watching: {label}",
            base="without the view",
            raw=plain,
            ours=idle,
            ratio=idle / plain,
        )
        note(f"web view open on a tap: {label}", base="without the view", raw=plain, ours=open_, ratio=open_ / plain)
        print(
            f"round {r + 1}: {label}: without the view {plain:,.0f}/s, served {idle / plain:.2f}x, "
            f"page open {open_ / plain:.2f}x",
            flush=True,
        )
