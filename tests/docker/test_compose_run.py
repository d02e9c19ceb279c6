"""`pipelogic compose` files run on the real engine: the example pipeline to completion
with the same output as `pipelogic up`, owned by the pipeline's owner; a second replica of a
vertex refused."""

from __future__ import annotations

import os

from dockerlib import (
    compose_for,
    copy_examples,
    counter_fold,
    final_status,
    hello_reference,
    lines,
    slow_counter_pipeline,
    wait_for,
)


def test_example_pipeline_in_containers_matches_pipelogic_up(tmp_path, project):
    examples = copy_examples(tmp_path / "docker")
    hello = examples / "hello"
    os.chown(hello, 4321, 4321)  # the broker takes this owner's uid: outputs are not root's
    p = project(compose_for(hello / "pipeline.yml"))
    p.compose("up", "--no-color")  # attached: returns once every container has exited
    assert p.wait_exit("broker", 10) == 0, p.logs("broker")
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
    wait_for(lambda: "a vertex runs as one instance" in p.logs("counter"), 60,
             "the second counter to be refused", lambda: p.logs("counter") + p.logs("broker"))
    assert p.wait_exit("broker") == 0, p.logs("broker")
    assert [int(x) for x in lines(out)] == counter_fold(n)
    # The first counter was never fenced or replaced by the second one.
    assert final_status(p.logs("broker"))["counter"]["restarts"] == 0
