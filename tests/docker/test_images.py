"""The runtime image and component images built by `pipelogic image build`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pipelogic.containers._images import build_runtime_image
from tests.docker.dockerlib import compose_for, lines


def test_runtime_image_is_non_root_small_and_health_checked(engine, runtime_image):
    cfg = engine.images.get(runtime_image).attrs["Config"]
    assert cfg["User"] == "10001:10001"
    assert "PIPELOGIC_STATE_DIR=/state" in cfg["Env"]
    assert cfg["Entrypoint"] == ["pipelogic"]
    assert cfg["Healthcheck"]["Test"] == ["CMD", "pipelogic", "health"]
    # The platform's base (numpy, opencv) is most of it; the wheels are not a layer.
    assert engine.images.get(runtime_image).attrs["Size"] < 480 * 2**20
    out = engine.containers.run(
        runtime_image, ["-c", "id -u; ls -ld /state; pipelogic health; echo rc=$?"], entrypoint="sh", remove=True
    ).decode()
    uid, mode, health, rc = out.split("\n")[:4]
    assert uid == "10001" and mode.startswith("drwxrwxrwt")
    assert "unhealthy" in health and rc == "rc=1"  # nothing ran: no beat


def test_a_second_build_with_nothing_changed_is_a_no_op(engine, runtime_image):
    before = engine.images.get(runtime_image).id
    said: list[str] = []
    assert build_runtime_image(offline=True, log=said.append) == runtime_image
    assert engine.images.get(runtime_image).id == before
    assert any("is up to date" in line for line in said), said


def write_wheel(folder, name: str, version: str, files: dict[str, str]) -> None:
    """A minimal pure-Python wheel, made by hand (no build backend, no index)."""
    import base64
    import hashlib
    import zipfile

    info = f"{name}-{version}.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: pipelogic-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")


@pytest.fixture
def component_image(engine, runtime_image, tmp_path):
    """A component whose requirements come from a wheel the user built, as an image."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    write_wheel(wheels, "plgreet", "1.0", {"plgreet/__init__.py": "def greet(x):\n    return f'hello {x}'\n"})
    comp = tmp_path / "pipe" / "greeter"
    (comp / "src").mkdir(parents=True)
    (comp / "component.yml").write_text("name: greeter\nworker: {input_type: Int64, output_type: String}\n")
    (comp / "src" / "requirements.txt").write_text("plgreet==1.0\n")
    (comp / "src" / "main.py").write_text(
        textwrap.dedent("""\
        import plgreet
        from pipelogic.worker import run

        run(plgreet.greet)
        """)
    )
    tag = "pltest/greeter:latest"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelogic",
            "image",
            "build",
            str(comp),
            "--tag-prefix",
            "pltest/",
            "--wheels",
            str(wheels),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == tag
    yield comp, tag
    engine.images.remove(tag, force=True)


def test_a_component_image_runs_its_component_with_no_mount(component_image, project, engine):
    comp, tag = component_image
    # Its requirements were installed from the wheels in a stage of their own: no layer of
    # the image holds the wheels folder, only what pip installed.
    steps = [h.get("CreatedBy") or "" for h in engine.images.get(tag).history()]
    assert not [s for s in steps if "wheels" in s], steps
    assert [s for s in steps if "COPY" in s and "/opt/pipelogic/" in s], steps
    pipeline = comp.parent / "pipeline.yml"
    pipeline.write_text(
        textwrap.dedent("""\
        name: greet
        components:
          numbers: {source: values, type: Int64, values: [1, 2, 3]}
          greeter: {path: ./greeter}
          out:     {sink: jsonl, path: ./out/greetings.jsonl}
        connections: [numbers -> greeter, greeter -> out]
        """)
    )
    refused = subprocess.run(
        [sys.executable, "-m", "pipelogic", "compose", str(pipeline)], capture_output=True, text=True
    )
    assert (
        refused.returncode != 0
        and "has src/requirements.txt" in refused.stderr
        and "--image greeter=" in refused.stderr
    )
    p = project(compose_for(pipeline, "--image", f"greeter={tag}"))
    p.compose("up", "--no-color")
    assert p.wait_exit("broker", 10) == 0, p.logs("broker") + p.logs("greeter")
    assert lines(comp.parent / "out" / "greetings.jsonl") == ['"hello 1"', '"hello 2"', '"hello 3"']
    mounts = p.container("greeter").attrs["Mounts"]
    # The component is in the image: no mount but its state and the keys volume.
    assert sorted(m["Destination"] for m in mounts) == ["/keys", "/state"], mounts


def test_a_failed_pip_install_shows_pips_words_and_how_to_build_from_wheels(engine, runtime_image, tmp_path):
    """Issue 25, item 5: the failure said only that a step returned a non-zero code."""
    comp = tmp_path / "needy"
    (comp / "src").mkdir(parents=True)
    (comp / "component.yml").write_text("name: needy\nworker: {input_type: Int64, output_type: Int64}\n")
    (comp / "src" / "requirements.txt").write_text("plnotapackage==1.0\n")
    (comp / "src" / "main.py").write_text("from pipelogic.worker import run\nrun(lambda x: x)\n")
    done = subprocess.run(
        [sys.executable, "-m", "pipelogic", "image", "build", str(comp), "--tag-prefix", "pltest/"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    err = done.stderr
    assert "building pltest/needy:latest failed: " in err, err
    assert "  | " in err and "plnotapackage" in err  # pip's own last lines
    assert "--wheels DIR" in err and "pip download --only-binary :all: --python-version 3." in err, err
    assert not engine.images.list(name="pltest/needy")


# -- issue 24, item 1: the runtime image carries what the platform's base carries ------------

PAINT = """\
import cv2
import numpy as np
from pipelogic.cv import Image
from pipelogic.worker import run

def paint(n):
    img = np.zeros((48, 64, 3), np.uint8)
    cv2.rectangle(img, (0, 0), (n, n), (255, 255, 255), -1)
    return Image.from_numpy(img)

run(paint)
"""

MEASURE = """\
import cv2
import google.protobuf
import pika
import yaml
from pipelogic.worker import run

def measure(image):
    gray = cv2.cvtColor(image.to_numpy(), cv2.COLOR_BGR2GRAY)
    return int(cv2.countNonZero(gray))

run(measure)
"""


def test_a_vision_component_written_for_the_platform_runs_on_the_runtime_image(
    tmp_path, project, engine, runtime_image
):
    """import cv2, numpy, yaml, protobuf and pika, Image.to_numpy(), and a requirements.txt
    with only comments (as `pipelogic init` writes one): no image of its own is needed."""
    pipe = tmp_path / "vision"
    for name, yml, main in (
        ("paint", "{input_type: Int64, output_type: Image}", PAINT),
        ("measure", "{input_type: Image, output_type: Int64}", MEASURE),
    ):
        (pipe / name / "src").mkdir(parents=True)
        (pipe / name / "component.yml").write_text(
            f"name: {name}\nbuild_system: 2-cuda12.8-torch2.8-onnxrtgpu1.22\nworker: {yml}\n"
        )
        (pipe / name / "src" / "main.py").write_text(main)
        (pipe / name / "src" / "requirements.txt").write_text("# the platform's base has what this needs\n\n")
    (pipe / "pipeline.yml").write_text(
        textwrap.dedent("""\
        name: vision
        components:
          n: {source: values, type: Int64, values: [0, 5, 10, 20]}
          paint: {path: ./paint}
          measure: {path: ./measure}
          out: {sink: jsonl, path: ./out/pixels.jsonl}
        connections: [n -> paint, paint -> measure, measure -> out]
        """)
    )
    p = project(compose_for(pipe / "pipeline.yml"))
    p.compose("up", "--no-color")
    assert p.wait_exit("broker", 10) == 0, p.logs("broker") + p.logs("paint") + p.logs("measure")
    assert lines(pipe / "out" / "pixels.jsonl") == ["1", "36", "121", "441"]
    versions = (
        engine.containers.run(
            runtime_image,
            ["-c", "import numpy, cv2, yaml, google.protobuf, pika; print(numpy.__version__, cv2.__version__)"],
            entrypoint="python3",
            remove=True,
        )
        .decode()
        .split()
    )
    from pipelogic.porting import PLATFORM_BASE

    assert versions[0] == PLATFORM_BASE["numpy"] and PLATFORM_BASE["opencv-python-headless"].startswith(versions[1])


def test_the_slim_variant_has_only_pipelogics_dependencies(engine, runtime_image):
    said: list[str] = []
    slim = build_runtime_image(offline=True, variant="slim", log=said.append)
    try:
        image = engine.images.get(slim)
        assert image.labels["org.pipelogic.variant"] == "slim"
        full, small = engine.images.get(runtime_image).attrs["Size"], image.attrs["Size"]
        assert small < full - 100 * 2**20, (full, small)
        out = engine.containers.run(
            slim,
            [
                "-c",
                "import zmq, msgpack, yaml, pipelogic\ntry:\n import numpy\nexcept ImportError:\n print('no numpy')",
            ],
            entrypoint="python3",
            remove=True,
        ).decode()
        assert out.strip() == "no numpy"
        print(f"runtime image sizes: full {full / 2**20:.0f} MiB, slim {small / 2**20:.0f} MiB")
    finally:
        for ref in (slim, slim.rsplit(":", 1)[0] + ":slim"):
            if engine.images.list(name=ref):
                engine.images.remove(ref, force=True)
