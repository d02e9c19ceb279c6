"""`pipelogic compose` files run on the real engine: the example pipeline to completion
with the same output as `pipelogic up`, owned by the pipeline's owner; a second container
of a one-instance (stateful) vertex refused; a replicated vertex as several containers,
scaled up mid-run with `docker-compose --scale`, with exactly one instance's output."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import urllib.request

import yaml

from tests.docker.dockerlib import (
    CHAOS,
    compose_for,
    copy_examples,
    counter_fold,
    hello_reference,
    lines,
    slow_counter_pipeline,
    wait_for,
)
from tests.helpers import free_port


def test_example_pipeline_in_containers_matches_pipelogic_up(tmp_path, project):
    examples = copy_examples(tmp_path / "docker")
    hello = examples / "hello"
    os.chown(hello, 4321, 4321)  # the broker takes this owner's uid: outputs are not root's
    p = project(compose_for(hello / "pipeline.yml"))
    ran = p.compose("up", "--no-color")  # attached: returns once every container has exited
    assert p.wait_exit("broker", 10) == 0, p.logs("broker")
    # The broker's log ends with the table `up` prints, not a JSON line (issue 25, item 7),
    # and docker-compose warns at most once (the broker's endpoint_mode, which Swarm needs).
    tail = p.logs("broker").rstrip().splitlines()[-15:]
    assert "pipeline hello: done" in tail and any(x.startswith("vertex  ") for x in tail), tail
    assert "PIPELOGIC_FINAL" not in p.logs("broker")
    assert (ran.stdout + ran.stderr).count("have been ignored") <= 1, ran.stderr
    assert "CurveZMQ on: 4 worker key(s), 1 operator key(s)" in p.logs("broker")  # on by default
    for service in ("double", "counter", "detector", "scale"):
        assert p.container(service).attrs["State"]["ExitCode"] == 0, p.logs(service)

    reference = hello_reference(tmp_path / "local")
    for name in ("counts.jsonl", "labels.jsonl"):
        produced = hello / "out" / name
        assert produced.read_bytes() == (reference / name).read_bytes()
        assert len(lines(produced)) == 1000
        assert (produced.stat().st_uid, produced.stat().st_gid) == (4321, 4321)
    assert (hello / "out").stat().st_uid == 4321


def test_a_second_replica_of_a_vertex_is_refused_not_half_served(tmp_path, project):
    n = 12_000
    pipeline = slow_counter_pipeline(tmp_path, n, 3000)
    out = pipeline.parent / "out" / "sums.jsonl"
    p = project(compose_for(pipeline))
    p.compose("up", "-d")
    wait_for(lambda: len(lines(out)) > 1000, 60, "the first outputs", lambda: p.logs("broker"))
    p.compose("up", "-d", "--no-recreate", "--scale", "counter=2")
    wait_for(
        lambda: "runs as one instance" in p.logs("counter"),
        60,
        "the second counter to be refused",
        lambda: p.logs("counter") + p.logs("broker"),
    )
    assert p.wait_exit("broker") == 0, p.logs("broker")
    assert [int(x) for x in lines(out)] == counter_fold(n)
    # The first counter was never fenced or replaced by the second one.
    assert p.final_status()["counter"]["restarts"] == 0


def test_a_replicated_vertex_runs_as_containers_and_scales_mid_run(tmp_path, project):
    n = 6000
    d = tmp_path / "pipe"
    d.mkdir()
    shutil.copytree(CHAOS / "sleeper", d / "sleeper")
    (d / "pipeline.yml").write_text(
        textwrap.dedent(f"""\
        name: replicated
        components:
          numbers: {{source: sequence, count: {n}, rate: 1000}}
          sleeper: {{path: ./sleeper, replicas: 2, config: {{max_ms: 5.0}}}}
          out:     {{sink: jsonl, path: ./out/values.jsonl}}
        connections:
          - numbers -> sleeper
          - sleeper -> out
        """)
    )
    out = d / "out" / "values.jsonl"
    ui = free_port()  # the web view, published on the host's loopback (keys on: it asks for nothing more)
    file = compose_for(d / "pipeline.yml", "--ui", str(ui))
    assert yaml.safe_load(file.read_text())["services"]["sleeper"]["deploy"]["replicas"] == 2
    p = project(file)
    p.compose("up", "-d")
    wait_for(
        lambda: len(p.containers("sleeper")) == 2 and len(lines(out)) > 500,
        90,
        "two sleeper containers and the first outputs",
        lambda: p.logs("broker") + p.logs("sleeper"),
    )
    p.compose("up", "-d", "--no-recreate", "--scale", "sleeper=3")

    def three_working():
        st = p.compose("exec", "-T", "broker", "pipelogic", "status", "--json", check=False)
        if st.returncode != 0:
            return None
        v = next(v for v in json.loads(st.stdout)["vertices"] if v["name"] == "sleeper")
        working = [i for i in v.get("instances", []) if i["state"] == "running" and i["ticks"] > 0]
        return v if len(working) == 3 else None

    v = wait_for(
        three_working, 60, "three sleeper instances taking ticks", lambda: p.logs("broker") + p.logs("sleeper")
    )

    # The web view from the host sees the three instances too.
    def view_sees_three():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/api/state", timeout=5) as r:
                snap = json.loads(r.read())
        except OSError:
            return None
        return snap if len(snap["vertices"]["sleeper"]["instances"]) == 3 else None

    snap = wait_for(view_sees_three, 30, "the web view to show three sleeper instances", lambda: p.logs("broker"))
    assert snap["edges"]["numbers.0->sleeper.0"]["count"] > 0
    assert f"web view at http://127.0.0.1:{ui}/" in p.logs("broker")
    # Each container is its own instance (its host name is the container's id).
    hosts = {i["host"] for i in v["instances"]}
    assert hosts == {c.id[:12] for c in p.containers("sleeper")}, (hosts, v["instances"])
    assert p.wait_exit("broker") == 0, p.logs("broker")
    assert [int(x) for x in lines(out)] == [3 * x + 1 for x in range(n)]
    for c in p.containers("sleeper"):
        c.reload()
        wait_for(lambda c=c: c.reload() or c.status == "exited", 30, "the sleepers to exit")
        assert c.attrs["State"]["ExitCode"] == 0, c.logs().decode()
    assert p.final_status()["sleeper"]["duplicates"] == 0


def test_large_values_cross_containers_through_a_shared_memory_volume(tmp_path, project):
    """`--shared-memory`: a tmpfs volume mounted into every container; 1 MiB blobs from one
    worker container reach another as slots it maps (the consumer checks that), the output
    is exact, and the broker held no slot at the end."""
    n = 300
    d = tmp_path / "pipe"
    d.mkdir()
    shutil.copytree(CHAOS / "blobs", d / "blobs")
    shutil.copytree(CHAOS / "digest", d / "digest")
    (d / "pipeline.yml").write_text(
        textwrap.dedent(f"""\
        name: blobs
        components:
          numbers: {{source: sequence, count: {n}}}
          blobs:   {{path: ./blobs}}
          digest:  {{path: ./digest, config: {{expect: shm}}}}
          out:     {{sink: jsonl, path: ./out/values.jsonl}}
        connections:
          - numbers -> blobs
          - blobs -> digest
          - digest -> out
        """)
    )
    file = compose_for(d / "pipeline.yml", "--no-keys", "--shared-memory", "256m")
    doc = yaml.safe_load(file.read_text())
    assert doc["volumes"]["shm"]["driver_opts"]["type"] == "tmpfs"
    p = project(file)
    p.compose("up", "--no-color")
    logs = p.logs("broker")
    assert p.wait_exit("broker", 10) == 0, logs
    for service in ("blobs", "digest"):
        assert p.container(service).attrs["State"]["ExitCode"] == 0, p.logs(service)
    assert [int(x) for x in lines(d / "out" / "values.jsonl")] == [2 * x + 1 for x in range(n)], logs
    final = p.final()
    shm = final["broker"]["shm"]
    assert shm["adopted"] == n and shm["held"] == 0, shm  # every blob went through a slot


WATCHER = """\
import mmap
import os
import time

from pipelogic.worker import run


def watch(b: memoryview) -> int:
    b = memoryview(b)
    x = int.from_bytes(b[:8], "little")
    if not isinstance(b.obj, mmap.mmap):
        return -3  # not through a slot
    if bytes(b) != x.to_bytes(8, "little") * (len(b) // 8):
        return -1
    if x == 5:  # hold the run (so the producer's pool) until the snoop has tried it
        deadline = time.monotonic() + 120
        while not os.path.exists("/shm/snooped") and time.monotonic() < deadline:
            time.sleep(0.05)
    return x * 2 + 1


run(watch)
"""

SNOOP = """\
import os
import re
import stat
import time

from pipelogic.worker import run

POOL = re.compile(r"pipelogic-[0-9a-f]+-[0-9]+-([0-9]+|ctl)")


def snoop(x: int) -> str:
    deadline = time.monotonic() + 120
    names = []
    while time.monotonic() < deadline:  # the producer's control file and a slot
        names = [n for n in os.listdir("/shm") if POOL.fullmatch(n)]
        if any(n.endswith("-ctl") for n in names) and not all(n.endswith("-ctl") for n in names):
            break
        time.sleep(0.05)
    denied = opened = 0
    modes = set()
    for name in names:
        try:
            modes.add(oct(stat.S_IMODE(os.stat("/shm/" + name).st_mode)))
            os.close(os.open("/shm/" + name, os.O_RDONLY))
            opened += 1
        except PermissionError:
            denied += 1
        except FileNotFoundError:
            pass
    open("/shm/snooped", "w").close()
    return f"denied={denied} opened={opened} modes={','.join(sorted(modes))} uid={os.getuid()}"


run(snoop)
"""


def test_under_keys_frames_cross_containers_in_shared_memory_only_to_their_consumers(tmp_path, project):
    """Keys on (the default) and `--shared-memory`: 1 MiB blobs reach their consumer's
    container as slots it maps (it checks), with the broker running as the pipeline's
    owner, not root; a worker container of the same pipeline that does not consume the
    producer is refused by the kernel on every one of its pool files, and the output is
    exact with no slot left held."""
    n = 60
    d = tmp_path / "pipe"
    d.mkdir()
    shutil.copytree(CHAOS / "blobs", d / "blobs")
    for name, yml, main in (
        ("watcher", "input_type: Bytes\n  output_type: Int64", WATCHER),
        ("snoop", "input_type: Int64\n  output_type: String", SNOOP),
    ):
        (d / name / "src").mkdir(parents=True)
        (d / name / "component.yml").write_text(f"name: {name}\nlanguage: py\nworker:\n  {yml}\n")
        (d / name / "src" / "main.py").write_text(main)
    (d / "pipeline.yml").write_text(
        textwrap.dedent(f"""\
        name: private
        components:
          numbers: {{source: sequence, count: {n}}}
          blobs:   {{path: ./blobs}}
          watcher: {{path: ./watcher}}
          out:     {{sink: jsonl, path: ./out/values.jsonl}}
          once:    {{source: sequence, count: 1}}
          snoop:   {{path: ./snoop}}
          seen:    {{sink: jsonl, path: ./out/snoop.jsonl}}
        connections: [numbers -> blobs, blobs -> watcher, watcher -> out, once -> snoop, snoop -> seen]
        """)
    )
    os.chown(d, 4321, 4321)  # the broker drops root for this owner: it reads the pools by their groups
    file = compose_for(d / "pipeline.yml", "--shared-memory", "256m")
    doc = yaml.safe_load(file.read_text())
    uid = {name: int(doc["services"][name]["user"].split(":")[0]) for name in ("blobs", "watcher", "snoop")}
    assert doc["services"]["watcher"]["group_add"] == [uid["blobs"]]
    assert "group_add" not in doc["services"]["snoop"]
    p = project(file)
    p.compose("up", "--no-color")
    logs = p.logs("broker")
    assert p.wait_exit("broker", 10) == 0, logs
    assert "running as uid 4321" in logs, logs
    for service in ("blobs", "watcher", "snoop"):
        assert p.container(service).attrs["State"]["ExitCode"] == 0, p.logs(service)
    assert [int(x) for x in lines(d / "out" / "values.jsonl")] == [2 * x + 1 for x in range(n)], logs
    [seen] = [json.loads(x) for x in lines(d / "out" / "snoop.jsonl")]
    fields = dict(part.split("=") for part in seen.split())
    assert int(fields["denied"]) >= 2 and fields["opened"] == "0", seen  # the control file and slots
    assert set(fields["modes"].split(",")) == {"0o640", "0o660"}, seen
    assert fields["uid"] == str(uid["snoop"]), seen
    shm = p.final()["broker"]["shm"]
    assert shm["adopted"] == n and shm["held"] == 0, shm  # every blob went through a slot
