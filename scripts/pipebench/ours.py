"""The same work through the broker and real worker processes."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from .viewer import View

# -- ours ------------------------------------------------------------------------------------


def _timed_null(sink: Any, start_at: int, stamps: bool) -> Any:
    """Make the null sink note, from inside the broker's loop, when values reach it."""
    from backend_stub.builtins import Sink

    class TimedNull(Sink):
        stamps: list[float] | None
        start_at: int
        t0: float
        t1: float
        c0: int
        cpu0: float  # this process's CPU time at t0 (the broker's: the workers are children)

        @property
        def count(self) -> int:
            return self._count

        @count.setter
        def count(self, v: int) -> None:
            now = time.perf_counter()
            self._count = v
            if self.stamps is not None:
                self.stamps.append(now)
            if not self.t0 and v >= self.start_at:
                self.t0, self.c0, self.cpu0 = now, v, time.process_time()
            self.t1 = now

    sink._count = sink.__dict__.pop("count")
    sink.__class__ = TimedNull
    sink.start_at, sink.t0, sink.t1, sink.c0, sink.cpu0 = start_at, 0.0, 0.0, 0, 0.0
    sink.stamps = [] if stamps else None
    return sink


def ours(
    base: Path,
    comps: dict[str, Path],
    n: int,
    credit: int,
    batch: int,
    worker: str = "double",
    source: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    stamps: bool = False,
    shm: bool = True,
    ui: str = "",
    store: bool = False,
) -> tuple[float, list[float]]:
    """(messages per second, intervals between values at the sink) through the broker.
    ``shm=False`` turns the shared-memory path off (broker and workers): sockets only.
    ``ui``: the web view served beside it, ``idle`` (nobody watching) or ``watching``.
    ``store``: the broker keeps the run in a recovery store, as `pipelogic up` does."""
    saved = os.environ.get("PIPELOGIC_SHM")
    os.environ["PIPELOGIC_SHM"] = "1" if shm else "0"
    try:
        return _ours(base, comps, n, credit, batch, worker, source, extra, stamps, ui, store)
    finally:
        if saved is None:
            os.environ.pop("PIPELOGIC_SHM", None)
        else:
            os.environ["PIPELOGIC_SHM"] = saved


def _ours(
    base: Path,
    comps: dict[str, Path],
    n: int,
    credit: int,
    batch: int,
    worker: str,
    source: dict[str, Any] | None,
    extra: dict[str, Any] | None,
    stamps: bool,
    ui: str = "",
    store: bool = False,
) -> tuple[float, list[float]]:
    from backend_stub.broker import Broker
    from backend_stub.model import Settings
    from backend_stub.vertices import SinkVertex
    from pipelogic.pipeline import parse_pipeline

    with tempfile.TemporaryDirectory(dir=base) as tmp:
        vertices: dict[str, Any] = {"d": {"path": str(comps[worker]), **(extra or {})}, "o": {"sink": "null"}}
        if source is None:
            vertices["n"] = {"source": "sequence", "count": n}
            edges = ["n -> d", "d -> o"]
            procs = ["d"]
        else:
            vertices["n"] = source
            edges = ["n -> d", "d -> o"]
            procs = ["n", "d"]
        pl = parse_pipeline({"name": "bench", "components": vertices, "connections": edges}, Path(tmp) / "pipeline.yml")
        state = Path(tmp) / "broker-state" if store else None
        broker = Broker(pl, "tcp://127.0.0.1:0", Settings(credit=credit, batch=batch), state_dir=state)
        out = broker.scheduler.vertices["o"]
        assert isinstance(out, SinkVertex)
        sink = _timed_null(out.sink, n // 10, stamps)
        k = pl.vertices["d"].replicas
        up = _all_ready(broker, k) if "replicas" in (extra or {}) else None
        view = View(broker, watching=ui == "watching") if ui else None
        try:
            _serve(broker, pl, procs, Path(tmp), sink, n)
        finally:
            if view is not None:
                view.close()
        intervals = [b - a for a, b in zip(sink.stamps, sink.stamps[1:])] if stamps else []
        if up is not None:  # from when every instance was ready: the work done since, over the time it took
            return (n - up["done"]) / (sink.t1 - up["t0"]), []
        return (n - sink.c0) / (sink.t1 - sink.t0), intervals[n // 10 :]


def _all_ready(broker: Any, k: int) -> dict[str, float]:
    """Note when all ``k`` instances of vertex d are ready, and how many ticks they had done
    by then (an instance that starts first must not count as parallel work)."""
    from backend_stub.vertices import ComponentVertex, ReplicatedVertex

    sch = broker.scheduler
    vs = sch.vertices["d"]
    assert isinstance(vs, ComponentVertex)
    up: dict[str, float] = {}
    inner = sch.on_message

    def on_message(msg: Any, payload: Any, now: float, pump: bool = True) -> Any:
        out = inner(msg, payload, now, pump)
        if not up:
            if isinstance(vs, ReplicatedVertex):
                ready, done = sum(i.ready for i in vs.instances.values()), sum(i.ticks for i in vs.instances.values())
            else:
                ready, done = int(vs.ready), vs.applied
            if ready >= k:
                up["t0"] = time.perf_counter()
                up["done"] = done
        return out

    sch.on_message = on_message
    return up


# -- how the broker's cost grows with the pipeline -------------------------------------------


def graph(base: Path, comps: dict[str, Path], n: int, stages: int, fanout: int = 0) -> tuple[float, float]:
    """(items per second at the sink, the broker's CPU microseconds per item and stage) for
    a chain ``sequence -> stages x double -> null`` or, with ``fanout``, a source feeding
    that many ``double`` workers, each with a null sink of its own (then each worker is a
    stage). Timed from the 10th percent of the items, as ``ours``."""
    from backend_stub.broker import Broker
    from backend_stub.model import Settings
    from backend_stub.vertices import SinkVertex
    from pipelogic.pipeline import parse_pipeline

    with tempfile.TemporaryDirectory(dir=base) as tmp:
        vertices: dict[str, Any] = {"n": {"source": "sequence", "count": n}}
        if fanout:
            workers = [f"d{i}" for i in range(fanout)]
            edges = [f"n -> {w}" for w in workers] + [f"{w} -> o{i}" for i, w in enumerate(workers)]
            vertices.update({f"o{i}": {"sink": "null"} for i in range(fanout)})
        else:
            workers = [f"d{i}" for i in range(stages)]
            chain = ["n", *workers, "o0"]
            edges = [f"{a} -> {b}" for a, b in itertools.pairwise(chain)]
            vertices["o0"] = {"sink": "null"}
        vertices.update({w: {"path": str(comps["double"])} for w in workers})
        pl = parse_pipeline({"name": "graph", "components": vertices, "connections": edges}, Path(tmp) / "pipeline.yml")
        broker = Broker(pl, "tcp://127.0.0.1:0", Settings())
        out = broker.scheduler.vertices["o0"]
        assert isinstance(out, SinkVertex)
        sink = _timed_null(out.sink, n // 10, False)
        cpu1 = _serve(broker, pl, workers, Path(tmp), sink, n)
        items = n - sink.c0
        return items / (sink.t1 - sink.t0), (cpu1 - sink.cpu0) * 1e6 / (items * len(workers))


def _serve(broker: Any, pl: Any, vertices: list[str], tmp: Path, sink: Any, n: int) -> float:
    """Start a worker process per instance of each of ``vertices``, serve the broker on
    this thread until the run ends, reap the workers; fail unless the sink took all ``n``.
    Returns this process's CPU time when the broker stopped serving."""
    procs = []
    for v in vertices:
        for i in range(pl.vertices[v].replicas):
            env = dict(
                os.environ,
                PIPELOGIC_BROKER=broker.endpoint,
                PIPELOGIC_COMPONENT=v,
                PIPELOGIC_STATE_DIR=str(tmp / "state"),
                PIPELOGIC_LOG_LEVEL=os.environ.get("BENCH_WORKER_LOG", "warning"),
                PIPELOGIC_INSTANCE=f"{v}#{i}",
            )
            path = pl.vertices[v].params["path"]
            procs.append(subprocess.Popen([sys.executable, "-m", "pipelogic", "worker", str(path)], env=env))
    try:
        broker.serve()
        cpu = time.process_time()
    finally:
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if broker.scheduler.failed or sink.count < n:
        raise RuntimeError(f"the run failed after {sink.count} of {n} values: {broker.scheduler.failed}")
    return cpu


# -- memory under a stalled consumer ---------------------------------------------------------


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stalled_memory(base: Path, comps: dict[str, Path], stall_s: float) -> dict[str, float]:
    """The standalone broker's RSS (MB) while a consumer of 1.3 MB values is stalled."""
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        pfile = Path(tmp) / "pipeline.yml"
        pfile.write_text(
            textwrap.dedent(f"""\
            name: stall
            components:
              n: {{source: sequence, count: 100000}}
              b: {{path: {comps["blob"]}}}
              s: {{path: {comps["stall"]}}}
              o: {{sink: "null"}}
            connections: ["n -> b", "b -> s", "s -> o"]
        """)
        )
        env = dict(os.environ, PIPELOGIC_LOG_LEVEL=os.environ.get("BENCH_WORKER_LOG", "warning"))
        broker = subprocess.Popen(
            [sys.executable, "-m", "backend_stub", str(pfile), "--listen", "tcp://127.0.0.1:0"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs: list[subprocess.Popen[Any]] = []
        try:
            assert broker.stderr is not None
            endpoint = ""
            while not endpoint:
                line = broker.stderr.readline()
                if not line:
                    raise RuntimeError("the broker exited before it listened")
                if line.startswith("PIPELOGIC_BROKER="):
                    endpoint = line.strip().split("=", 1)[1]
            idle = _rss_mb(broker.pid)
            for v in ("b", "s"):
                wenv = dict(
                    env, PIPELOGIC_BROKER=endpoint, PIPELOGIC_COMPONENT=v, PIPELOGIC_STATE_DIR=str(Path(tmp) / "st")
                )
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "pipelogic", "worker", str(comps["blob" if v == "b" else "stall"])],
                        env=wenv,
                    )
                )
            samples = []
            t0 = time.monotonic()
            while time.monotonic() - t0 < stall_s:
                time.sleep(1.0)
                samples.append(_rss_mb(broker.pid))
            ten = samples[min(9, len(samples) - 1)]
            return {"idle": idle, "after10": ten, "end": samples[-1], "max": max(samples)}
        finally:
            for p in [*procs, broker]:
                p.kill()
                p.wait()


# -- the table -------------------------------------------------------------------------------


# -- latency: push to sink, behind a slow model ----------------------------------------------


def latency(
    base: Path, comps: dict[str, Path], frames: int, fps: float = 0.0, keep: str = "", replicas: int = 1
) -> tuple[list[float], int]:
    """(each delivered frame's age at the end of ``camera -> 0.2-0.4 s model -> age``, in
    seconds; how many frames the camera dropped). The camera pushes ``frames`` 720p frames:
    blocking as fast as the pipeline takes them (``fps`` 0, a file), or live at ``fps`` never
    waiting, its queue keeping the latest (``keep``) or the first that fit; the model runs as
    ``replicas`` instances."""
    import json

    from backend_stub.broker import Broker
    from backend_stub.model import Settings
    from backend_stub.vertices import ComponentVertex, SinkVertex
    from pipelogic.pipeline import parse_pipeline

    with tempfile.TemporaryDirectory(dir=base) as tmp:
        cam: dict[str, Any] = {"path": str(comps["camera_stamped"]), "config": {"frames": frames, "fps": fps}}
        if keep:
            cam["virtual_queue"] = {"keep": keep}
        vertices: dict[str, Any] = {
            "cam": cam,
            "det": {"path": str(comps["slow_model"]), "replicas": replicas},
            "age": {"path": str(comps["frame_age"])},
            "o": {"sink": "jsonl", "path": "ages.jsonl"},
        }
        edges = ["cam -> det", "det -> age", "age -> o"]
        pl = parse_pipeline(
            {"name": "latency", "components": vertices, "connections": edges}, Path(tmp) / "pipeline.yml"
        )
        broker = Broker(pl, "tcp://127.0.0.1:0", Settings())
        out = broker.scheduler.vertices["o"]
        assert isinstance(out, SinkVertex)
        _serve(broker, pl, ["cam", "det", "age"], Path(tmp), out.sink, 1 if fps else frames)
        ages = [float(json.loads(line)) for line in (Path(tmp) / "ages.jsonl").read_text().splitlines()]
        cam_vs = broker.scheduler.vertices["cam"]
        assert isinstance(cam_vs, ComponentVertex)
        return ages, int(cam_vs.worker_stats.get("virtual_dropped", 0))
