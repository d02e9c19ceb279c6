"""The generated compose file deploys unchanged with `docker stack deploy` on a one-node
Swarm made for the test (and left afterwards, with everything it created); a vertex with
``replicas: 2`` runs as two tasks and the output is what one instance gives, and a
component that takes 45 s to load is not killed as unhealthy meanwhile."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.docker.dockerlib import PREFIX, compose_for, copy_examples, hello_reference, lines, wait_for


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture
def swarm(engine):
    state = engine.info()["Swarm"]["LocalNodeState"]
    if state != "inactive":
        reason = f"this engine is already in a swarm ({state}); the test makes and leaves its own"
        if os.environ.get("PIPELOGIC_REQUIRE_DOCKER") == "1":
            pytest.fail(f"PIPELOGIC_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    networks_before = {n.name for n in engine.networks.list()}
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    stacks: list[str] = []
    try:
        yield stacks
    finally:
        try:
            for stack in stacks:
                docker("stack", "rm", stack, check=False)
                wait_for(
                    lambda s=stack: not engine.services.list(filters={"label": f"com.docker.stack.namespace={s}"}),
                    60,
                    f"stack {stack} to go",
                )
                # The low-level list: the high-level one inspects each container and races with
                # their removal (a 404 for one that just went).
                wait_for(
                    lambda s=stack: (
                        not engine.api.containers(all=True, filters={"label": f"com.docker.stack.namespace={s}"})
                    ),
                    60,
                    f"the containers of {stack} to go",
                )
        finally:
            docker("swarm", "leave", "--force", check=False)  # whatever happened above
        for stack in stacks:
            for v in engine.volumes.list():
                if v.name.startswith(f"{stack}_"):
                    v.remove(force=True)
        for n in engine.networks.list():
            if n.name not in networks_before and n.name in ("docker_gwbridge", "ingress"):
                n.remove()


def what_ran(engine, stack: str) -> str:
    """For a failure message: the stack's tasks, each container's exit and health checks,
    and the services' logs (a worker logs to stderr)."""
    out = [docker("stack", "ps", stack, "--no-trunc", check=False).stdout]
    for c in engine.api.containers(all=True, filters={"label": f"com.docker.stack.namespace={stack}"}):
        state = engine.api.inspect_container(c["Id"])["State"]
        health = state.get("Health") or {}
        checks = [
            f"{h.get('End', '')[11:23]} exit {h.get('ExitCode')}: {h.get('Output', '').strip()}"
            for h in health.get("Log", [])
        ]
        out.append(
            f"{c['Names'][0]}: {state.get('Status')} exit {state.get('ExitCode')} "
            f"started {state.get('StartedAt', '')[11:23]} finished {state.get('FinishedAt', '')[11:23]} "
            f"health {health.get('Status')}\n  " + "\n  ".join(checks)
        )
    for service in ("broker", "double"):
        logs = docker("service", "logs", "--timestamps", "--raw", f"{stack}_{service}", check=False)
        out.append(f"--- {service}:\n{logs.stdout}{logs.stderr}")
    return "\n".join(out)


def test_the_generated_file_deploys_on_a_swarm(tmp_path, swarm, engine, runtime_image):
    hello = copy_examples(tmp_path) / "hello"
    # A component that loads slowly (a model, at import): nothing beats meanwhile, and a
    # Swarm kills a task whose health check fails. 45 s is past what the checks allowed
    # before the image's start period became 5 minutes (20 s + 3 retries of 5 s).
    main = hello.parent / "double" / "src" / "main.py"
    main.write_text("import time\n\ntime.sleep(45)  # loading a model\n" + main.read_text())
    pipeline = hello / "pipeline.yml"
    pipeline.write_text(
        pipeline.read_text().replace("double:   {path: ../double}", "double:   {path: ../double, replicas: 2}")
    )
    file = compose_for(pipeline)
    stack = f"{PREFIX}{uuid.uuid4().hex[:6]}"
    swarm.append(stack)
    docker("stack", "deploy", "-c", str(file), stack)

    def broker_state() -> str:
        services = engine.services.list(filters={"name": f"{stack}_broker"})
        tasks = services[0].tasks() if services else []
        states = [t["Status"]["State"] for t in tasks]
        if "failed" in states or "rejected" in states:
            raise AssertionError(f"broker task {states}: {[t['Status'].get('Err') for t in tasks]}")
        return "complete" if "complete" in states else ""

    wait_for(broker_state, 180, "the broker task to complete", lambda: what_ran(engine, stack))
    reference = hello_reference(tmp_path / "local")
    for name in ("counts.jsonl", "labels.jsonl"):
        assert (hello / "out" / name).read_bytes() == (reference / name).read_bytes()
        assert len(lines(hello / "out" / name)) == 1000

    def all_complete() -> str:
        tasks = docker("stack", "ps", stack, "--format", "{{.Name}} {{.CurrentState}}").stdout
        return tasks if tasks.count("Complete") >= 6 else ""

    tasks = wait_for(all_complete, 60, "every task to complete", lambda: what_ran(engine, stack))
    # The broker and five workers (double as two instances), each exited 0.
    assert tasks.count("Complete") == 6, tasks
    assert sum(line.startswith(f"{stack}_double.") for line in tasks.splitlines()) == 2, tasks
