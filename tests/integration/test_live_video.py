"""Live video through real worker processes: a camera (a virtual-input source pushing 720p
frames) into a slow model. What waits in front of the model is checked by count, not by
time, so these checks hold however slow the machine is: when the model starts on a frame,
the camera has pushed only a few frames past it (not the buffers' worth: every frame queued
is a frame time of latency), the model's input queue never holds more than one frame, a
blocking camera's frames all arrive in order, and a live camera that keeps the latest
delivers its newest frame and counts the stale ones it dropped."""

import json
import subprocess
import sys

import pytest

from pipelogic.client import BrokerClient
from tests.helpers import BrokerProc, reap, run_ended, wait_until

CAMERA = """
import os, threading, time
import numpy as np
from pipelogic.cv import Image
from pipelogic.worker import config, run, virtual_in

def grab():
    for n in range(int(config.frames)):
        frame = np.full((720, 1280, 3), n % 256, np.uint8)
        virtual_in.push(Image.from_numpy(frame, format="BGR"), blocking=not config.live)
        with open(os.environ["PUSHED"] + ".tmp", "w") as f:  # how many pushes have returned
            f.write(str(n + 1))
        os.replace(os.environ["PUSHED"] + ".tmp", os.environ["PUSHED"])
        if config.live:
            time.sleep(0.01)  # 100 fps, far faster than the model
    virtual_in.close()

def from_camera(virtual_input):
    return virtual_input[0]

threading.Thread(target=grab, daemon=True).start()
run(from_camera)
"""

MODEL = """
import os, time
from pipelogic.worker import run

def detect(img):
    with open(os.environ["PUSHED"]) as f:
        pushed = int(f.read())
    time.sleep(0.1)  # a model: far slower than the camera
    return [int(img.to_numpy()[0, 0, 0]), pushed]

run(detect)
"""


@pytest.fixture
def parts(component):
    camera = component(
        "camera",
        """
        name: camera
        worker:
          output_type: Image
          config_schema:
            frames: {type: Int64, default: 12}
            live: {type: Bool, default: false}
        """,
        CAMERA,
    )
    model = component("model", "name: model\nworker: {input_type: Image, output_type: '[Int64]'}\n", MODEL)
    return camera, model


def _run(tmp_path, env, camera, model, frames, live, queue=None):
    cam = {"path": str(camera), "config": {"frames": frames, "live": live}}
    if queue:
        cam["virtual_queue"] = queue
    f = tmp_path / "pipeline.yml"
    f.write_text(
        json.dumps(
            {
                "name": "video",
                "components": {"cam": cam, "det": {"path": str(model)}, "out": {"sink": "jsonl", "path": "out.jsonl"}},
                "connections": ["cam -> det", "det -> out"],
            }
        )
    )
    broker = BrokerProc(f, env, "--serve-forever")
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "pipelogic", "worker", str(path)],
            env=dict(env, PIPELOGIC_BROKER=broker.endpoint, PIPELOGIC_COMPONENT=name, PUSHED=str(tmp_path / "pushed")),
            stderr=subprocess.DEVNULL,
        )
        for name, path in (("cam", camera), ("det", model))
    ]
    try:
        client = BrokerClient(broker.endpoint)
        st = wait_until(lambda: run_ended(client), 120, "the run to end", lambda: "".join(broker.lines[-20:]))
    finally:
        for w in workers:  # they exit once the run ended; reap kills what did not
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                pass
        reap(workers, broker)
    assert st.state == "done", st
    rows = {v["name"]: v for v in st.vertices}
    values = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    return rows, values


def test_a_slow_model_has_few_frames_waiting_and_a_blocking_camera_loses_none(tmp_path, cli_env, parts):
    rows, values = _run(tmp_path, cli_env, *parts, frames=30, live=False)
    assert [i for i, _ in values] == list(range(30))
    # Pushed past the frame the model starts on: the one queued at the broker, the one in
    # the camera's queue, one on its way; not the 24 frames the byte bounds would hold at
    # the model and as many again in its buffer and in the camera's queue.
    ahead = [pushed - 1 - i for i, pushed in values]
    assert max(ahead) <= 4, ahead
    assert rows["det"]["max_queues"] == [1]
    assert rows["cam"].get("virtual_dropped", 0) == 0


def test_a_live_camera_keeping_the_latest_drops_stale_frames_and_delivers_the_newest(tmp_path, cli_env, parts):
    rows, values = _run(tmp_path, cli_env, *parts, frames=60, live=True, queue={"keep": "latest"})
    values = [i for i, _ in values]
    assert values == sorted(values) and values[-1] == 59  # in order, and the newest is never dropped
    dropped = rows["cam"]["virtual_dropped"]
    assert dropped > 0 and len(values) + dropped == 60  # each frame delivered or counted
    assert rows["det"]["max_queues"] == [1]
