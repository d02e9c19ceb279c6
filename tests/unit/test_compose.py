"""`pipelogic compose` rendering (no engine needed) and the base image's apt sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pipelogic.containers import RUNTIME_IMAGE, ComposeOptions, render_compose
from pipelogic.containers._base import apt_sources
from pipelogic.errors import ContainerError
from pipelogic.pipeline import load_pipeline

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello" / "pipeline.yml"


def test_the_checked_in_compose_file_is_what_the_generator_writes():
    opts = ComposeOptions(RUNTIME_IMAGE, command="pipelogic compose examples/hello/pipeline.yml -o compose.yaml")
    expected = render_compose(load_pipeline(HELLO), ROOT / "compose.yaml", opts)
    assert (ROOT / "compose.yaml").read_text() == expected, (
        "regenerate: pipelogic compose examples/hello/pipeline.yml -o compose.yaml"
    )


def test_services_volumes_and_paths():
    doc = yaml.safe_load(render_compose(load_pipeline(HELLO), ROOT / "compose.yaml", ComposeOptions("img:1")))
    assert doc["version"] == "3.8"
    services = doc["services"]
    assert set(services) == {"broker", "double", "counter", "detector", "scale"}  # built-ins live in the broker
    broker = services["broker"]
    assert broker["command"] == [
        "broker",
        "/pipeline/hello/pipeline.yml",
        "--listen",
        "tcp://0.0.0.0:5550",
        "--state-dir",
        "/state",
        "--run-as-owner-of",
        "/pipeline/hello",
        "--keys",
        "/keys",
        "--init-keys",
    ]
    # the pipeline's folder (its outputs) read-write, its components read-only and nothing
    # else of the host; the recovery store and the keys on volumes
    comps = [f"./examples/{c}:/pipeline/{c}:ro" for c in ("counter", "detector", "double", "scale")]
    assert broker["volumes"] == ["./examples/hello:/pipeline/hello", *comps, "broker-state:/state", "keys:/keys"]
    assert broker["deploy"]["endpoint_mode"] == "dnsrr"
    assert not any("ports" in s for s in services.values())  # nothing published
    counter = services["counter"]
    assert counter["volumes"] == ["./examples/counter:/component:ro", "counter-state:/state", "keys:/keys:ro"]
    # CurveZMQ: each worker its own uid, its own secret, the broker's public key
    assert counter["environment"]["PIPELOGIC_CURVE_KEY"] == "/keys/workers/counter.key_secret"
    assert counter["environment"]["PIPELOGIC_CURVE_SERVER_KEY"] == "/keys/broker.key"
    assert len({services[v]["user"] for v in ("double", "counter", "detector", "scale")}) == 4
    assert counter["environment"]["PIPELOGIC_BROKER"] == "tcp://broker:5550"
    assert counter["environment"]["PIPELOGIC_COMPONENT"] == "counter"
    assert counter["deploy"]["replicas"] == 1
    assert set(doc["volumes"]) == {
        "broker-state",
        "double-state",
        "counter-state",
        "detector-state",
        "scale-state",
        "keys",
    }
    # Written elsewhere, the host paths are relative to the file's folder.
    elsewhere = yaml.safe_load(
        render_compose(load_pipeline(HELLO), HELLO.parent / "compose.yaml", ComposeOptions("img:1"))
    )
    assert elsewhere["services"]["broker"]["volumes"][:2] == [".:/pipeline/hello", "../counter:/pipeline/counter:ro"]
    # --no-keys: plain TCP on the compose network, no keys volume, the image's user
    plain = yaml.safe_load(
        render_compose(load_pipeline(HELLO), ROOT / "compose.yaml", ComposeOptions("img:1", keys=False))
    )
    assert "--keys" not in plain["services"]["broker"]["command"] and "keys" not in plain["volumes"]
    assert "user" not in plain["services"]["counter"]
    assert elsewhere["services"]["double"]["volumes"][0] == "../double:/component:ro"


def test_a_component_image_replaces_the_mount():
    doc = yaml.safe_load(
        render_compose(load_pipeline(HELLO), ROOT / "c.yaml", ComposeOptions("img:1", {"double": "me/double:2"}))
    )
    double = doc["services"]["double"]
    assert double["image"] == "me/double:2" and "command" not in double
    assert double["volumes"] == ["double-state:/state", "keys:/keys:ro"]


def test_shared_memory_is_one_tmpfs_volume_mounted_into_every_container():
    doc = yaml.safe_load(
        render_compose(load_pipeline(HELLO), ROOT / "c.yaml", ComposeOptions("img:1", keys=False, shared_memory="1G"))
    )
    assert doc["volumes"]["shm"] == {"driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1g,mode=1777"}}
    for name, svc in doc["services"].items():
        assert "shm:/shm" in svc["volumes"], name
        assert svc["environment"]["PIPELOGIC_SHM_DIR"] == "/shm", name
        assert svc["environment"]["PIPELOGIC_SHM_MODE"] == "666", name
    plain = yaml.safe_load(render_compose(load_pipeline(HELLO), ROOT / "c.yaml", ComposeOptions("img:1", keys=False)))
    assert "shm" not in plain["volumes"] and "environment" not in plain["services"]["broker"]
    with pytest.raises(ContainerError, match="expected a size such as 512m or 2g, got '1 GB'"):
        render_compose(load_pipeline(HELLO), ROOT / "c.yaml", ComposeOptions("img:1", keys=False, shared_memory="1 GB"))


def test_shared_memory_under_keys_gives_each_consumer_the_groups_of_its_producers(tmp_path, component):
    """With keys, pool files are 0660 (PIPELOGIC_SHM_MODE=660) of each worker's own group,
    and a worker container is given the groups of the component vertices it consumes, no
    other: a chain a -> b -> c and a vertex d fed by a built-in source."""
    dirs = {n: component(n, f"name: {n}\nworker: {{input_type: Int64, output_type: Int64}}\n", "") for n in "abcd"}
    file = write(
        tmp_path,
        "name: groups\ncomponents:\n  n: {source: sequence, count: 3}\n"
        + "".join(f"  {n}: {{path: {d}}}\n" for n, d in dirs.items())
        + "  out: {sink: null}\n  out2: {sink: null}\n"
        "connections: [n -> a, a -> b, b -> c, c -> out, n -> d, d -> out2]\n",
    )
    text = render_compose(load_pipeline(file), tmp_path / "c.yaml", ComposeOptions("img:1", shared_memory="1g"))
    doc = yaml.safe_load(text)
    uids = {n: int(doc["services"][n]["user"].split(":")[0]) for n in "abcd"}
    assert all(doc["services"][n]["user"] == f"{u}:{u}" for n, u in uids.items())
    assert doc["services"]["b"]["group_add"] == [uids["a"]]
    assert doc["services"]["c"]["group_add"] == [uids["b"]]
    assert "group_add" not in doc["services"]["a"] and "group_add" not in doc["services"]["d"]  # a source feeds them
    for name, svc in doc["services"].items():
        assert svc["environment"]["PIPELOGIC_SHM_MODE"] == "660", name
        assert "shm:/shm" in svc["volumes"], name
    assert "Not for `docker stack deploy`, which refuses group_add" in text
    plain = render_compose(load_pipeline(file), tmp_path / "c.yaml", ComposeOptions("img:1"))
    assert "group_add" not in plain and "docker stack deploy -c THIS_FILE NAME" in plain


def test_the_web_view_is_published_on_the_hosts_loopback_only():
    doc = yaml.safe_load(render_compose(load_pipeline(HELLO), ROOT / "c.yaml", ComposeOptions("img:1", ui_port=8089)))
    broker = doc["services"]["broker"]
    at = broker["command"].index("--ui")
    assert broker["command"][at + 1] == "0.0.0.0:8089"
    assert broker["ports"] == ["127.0.0.1:8089:8089"]
    assert broker["environment"] == {"PIPELOGIC_UI_ON_HOST": "127.0.0.1:8089", "PIPELOGIC_KEYS": "/keys"}
    assert [n for n, svc in doc["services"].items() if "ports" in svc] == ["broker"]


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pipeline.yml").write_text(text)
    return tmp_path / "pipeline.yml"


def test_refusals(tmp_path, component):
    comp = component("broker", "name: broker\nworker: {input_type: Int64, output_type: Int64}\n", "")
    pl = load_pipeline(
        write(
            tmp_path,
            f"name: x\ncomponents:\n  n: {{source: sequence, count: 1}}\n  broker: {{path: {comp}}}\n"
            "  o: {sink: null}\nconnections: [n -> broker, broker -> o]\n",
        )
    )
    with pytest.raises(ContainerError, match="vertex 'broker' has the broker service's name"):
        render_compose(pl, tmp_path / "c.yaml", ComposeOptions("img:1"))
    with pytest.raises(ContainerError, match="--image names nope, which is not a component vertex"):
        render_compose(load_pipeline(HELLO), tmp_path / "c.yaml", ComposeOptions("img:1", {"nope": "x"}))
    (comp / "src" / "requirements.txt").write_text("numpy\n")
    pl2 = load_pipeline(
        write(tmp_path, pl.file.read_text().replace("  broker:", "  b:").replace("-> broker, broker ->", "-> b, b ->"))
    )
    with pytest.raises(ContainerError, match="has src/requirements.txt.*--image b=TAG"):
        render_compose(pl2, tmp_path / "c.yaml", ComposeOptions("img:1"))


def test_apt_sources_reads_enabled_files_of_both_forms(tmp_path):
    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text("# only a comment\n")
    (apt / "sources.list.d" / "debian.sources").write_text("Types: deb\nURIs: http://mirror.example/debian\n")
    (apt / "sources.list.d" / "extra.list").write_text("deb http://mirror.example/debian bookworm main\n")
    (apt / "sources.list.d" / "old.list.disabled").write_text("deb http://x/ y main\n")
    assert [p.name for p in apt_sources(tmp_path)] == ["debian.sources", "extra.list"]


def test_the_broker_mounts_allowed_outside_folders_and_refuses_absolute_data_paths(tmp_path):
    """Issue 29, item 7: data outside the pipeline's folder only where pipeline.yml allows
    it, mounted read-write at its place under /pipeline; nothing else of the host."""
    (tmp_path / "shared").mkdir()
    p = tmp_path / "proj" / "pipeline.yml"
    p.parent.mkdir()
    body = (
        f"name: t\nallow_paths_outside: [../shared]\ncomponents:\n  n: {{source: sequence, count: 3}}\n"
        f"  d: {{path: {ROOT / 'examples' / 'double'}}}\n  out: {{sink: jsonl, path: SINK}}\n"
        "connections: [n -> d, d -> out]\n"
    )
    p.write_text(body.replace("SINK", "../shared/x.jsonl"))
    doc = yaml.safe_load(render_compose(load_pipeline(p), p.parent / "compose.yaml", ComposeOptions("img:1")))
    vols = doc["services"]["broker"]["volumes"]
    # Each folder sits at its path from the folders' common root under /pipeline.
    shared, double = (tmp_path / "shared").resolve(), (ROOT / "examples" / "double").resolve()
    root = Path(os.path.commonpath([p.parent.resolve(), shared, double]))
    assert f"../shared:{Path('/pipeline') / shared.relative_to(root)}" in vols, vols
    assert f"{Path('/pipeline') / double.relative_to(root)}:ro" in " ".join(vols), vols
    assert not any(v.split(":")[1] == "/pipeline" for v in vols)  # never the whole common root
    p.write_text(body.replace("SINK", str(tmp_path / "shared" / "x.jsonl")))
    with pytest.raises(ContainerError, match=r"components\.out\.path: .* is absolute.*relative to pipeline\.yml"):
        render_compose(load_pipeline(p), p.parent / "compose.yaml", ComposeOptions("img:1"))
