"""The web view against a running pipeline (`pipelogic up --ui`, real processes): its API
(the graph, live figures and events, taps with pictures, the config round trip to the
worker, the guards), `tap --save`, and the page itself in a real headless Chromium, whose
screenshots are kept under build/ui/."""

import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image as PILImage

from tests.helpers import BrokerProc, up_args, wait_until

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "ui"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")

PIPELINE = """\
name: vision
components:
  webcam: {{path: {examples}/webcam, config: {{frames: 0, fps: 20}}, virtual_queue: {{keep: latest}}}}
  finder: {{path: {examples}/finder}}
  boxes:  {{sink: jsonl, path: ./out/boxes.jsonl}}
  rows:   {{sink: null}}
connections:
  - webcam -> finder
  - finder.0 -> boxes
  - finder.1 -> rows
"""


class VisionRun:
    """`pipelogic up --ui 0` on a camera-like source and a detector; the view's URL read
    from what `up` prints. Stopped (Ctrl-C, as a user does) and reaped by :meth:`stop`."""

    def __init__(self, tmp_path: Path, env: dict, *flags: str) -> None:
        f = tmp_path / "pipeline.yml"
        f.write_text(PIPELINE.format(examples=ROOT / "examples"))
        self.state = tmp_path / "st"
        self.proc = subprocess.Popen(
            up_args(f, "--ui", "0", "--state-dir", str(self.state), "--timeout", "150", *flags),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.readers = [
            threading.Thread(target=lambda s=s: self.lines.extend(s), daemon=True)
            for s in (self.proc.stdout, self.proc.stderr)
        ]
        for t in self.readers:
            t.start()
        found = wait_until(
            lambda: next((m for line in list(self.lines) if (m := re.search(r"web view at (http://\S+)", line))), None),
            what="up to say where the web view is",
            context=lambda: "".join(self.lines),
        )
        self.url = found.group(1).rstrip("/")

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def post(self, path: str, body: object, headers: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def endpoint(self) -> str:
        return json.loads((self.state / "broker.json").read_text())["endpoint"]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(45)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(15)
        for t in self.readers:
            t.join(5)
        for s in (self.proc.stdout, self.proc.stderr):
            if s is not None:
                s.close()
        return code


def picture_size(src: str) -> tuple[int, int]:
    header, data = src.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64")
    with PILImage.open(io.BytesIO(base64.b64decode(data))) as img:
        return img.size


def tapped(run: VisionRun, path: str, good, what: str):
    """Poll a tap (as the page does, cursor after cursor) until ``good(answer)`` holds."""
    cursor = [-1]

    def probe():
        sep = "&" if "?" in path else "?"
        status, body = run.get(f"{path}{sep}cursor={cursor[0]}")
        assert status == 200, body
        cursor[0] = body["next"]
        return body if good(body) else None

    return wait_until(probe, timeout_s=30, what=what, interval=0.2)


@pytest.mark.parametrize("keys", [False, True], ids=["plain", "with-keys"])
def test_the_view_shows_the_running_pipeline_and_sets_its_config(tmp_path, cli_env, keys):
    flags = ("--keys", str(tmp_path / "keys")) if keys else ()
    run = VisionRun(tmp_path, cli_env, *flags)
    try:
        status, graph = run.get("/api/graph")
        assert status == 200 and graph["pipeline"] == "vision"
        assert [v["name"] for v in graph["vertices"]] == ["webcam", "finder", "boxes", "rows"]
        assert {e["id"] for e in graph["edges"]} == {"webcam.0->finder.0", "finder.0->boxes.0", "finder.1->rows.0"}

        # Live figures: frames flow on the camera's edge, counted in messages and bytes.
        def flowing():
            _, snap = run.get("/api/state")
            e = snap["edges"]["webcam.0->finder.0"]
            return snap if e["rate"] > 0 and e["bytes_rate"] > 100_000 else None

        snap = wait_until(flowing, what="the camera's edge to show a rate", interval=0.2)
        assert snap["state"] == "running" and snap["vertices"]["finder"]["state"] == "running"

        # Server-sent events: snapshots keep coming, newer each time.
        with urllib.request.urlopen(run.url + "/api/events", timeout=15) as events:
            assert events.headers["Content-Type"] == "text/event-stream"
            times = []
            while len(times) < 3:
                line = events.readline().decode()
                if line.startswith("data: "):
                    times.append(json.loads(line[6:])["t"])
            assert times == sorted(times) and times[-1] > times[0]

        # A tapped Image edge: pictures of the value's size, or scaled within max_side.
        body = tapped(
            run, "/api/tap/webcam/0?max_side=480", lambda b: any(v["pictures"] for v in b["values"]), "a picture"
        )
        pic = next(p for v in body["values"] for p in v["pictures"])
        assert (pic["source_width"], pic["source_height"]) == (320, 240) and picture_size(pic["src"]) == (320, 240)
        body = tapped(
            run, "/api/tap/webcam/0?max_side=160", lambda b: any(v["pictures"] for v in b["values"]), "a small one"
        )
        assert picture_size(next(p for v in body["values"] for p in v["pictures"])["src"]) == (160, 120)

        # Boxes drawn over the picture they were found in.
        body = tapped(
            run, "/api/tap/finder/0?over=webcam.0", lambda b: b["over"]["matched"], "boxes over their own picture"
        )
        assert body["over"]["boxes"][0]["label"] == "square" and body["over"]["pictures"]

        # Config through the view: validated like `config set`, applied by the worker.
        status, answer = run.post("/api/config/finder", {"label": "blob"})
        assert status == 200 and answer["ok"] and answer["applied"], answer
        tapped(
            run,
            "/api/tap/finder/0",
            lambda b: any(x["label"] == "blob" for v in b["values"] for x in v["boxes"]),
            "the new label",
        )
        status, detail = run.get("/api/vertex/finder")
        assert {c["key"]: c["value"] for c in detail["config"]}["label"] == "blob"
        assert detail["config_version"] == answer["version"]
        wait_until(
            lambda: any("config applied: label=blob" in line for line in run.get("/api/vertex/finder")[1]["logs"]),
            what="the worker's own line saying config.sync() gave it the change",
        )
        for vertex, values, why in [
            ("finder", {"threshold": "lots"}, "declared type Int64"),
            ("finder", {"nope": 1}, "not in config_schema"),
            ("webcam", {"frames": 5}, "not mutable"),
            ("ghost", {"x": 1}, "unknown component vertex"),
        ]:
            status, answer = run.post(f"/api/config/{vertex}", values)
            assert status == 200 and not answer["ok"] and why in answer["error"], answer

        # The guards: another Host (DNS rebinding), a form post, another site's page.
        assert run.get("/api/graph", {"Host": "evil.example:80"})[0] == 403
        assert run.post("/api/config/finder", {"label": "x"}, {"Content-Type": "text/plain"})[0] == 415
        assert run.post("/api/config/finder", {"label": "x"}, {"Origin": "http://evil.example"})[0] == 403
        assert run.get("/api/vertex/ghost")[0] == 404
        assert run.get("/api/tap/ghost/0")[0] == 404
        assert run.get("/static/../server.py")[0] == 404

        # The workers' lines are kept in the run's folder, where the view read them.
        assert "config applied" in (run.state / "logs" / "finder.log").read_text()

        # `tap --save`: the pictures as numbered files, PNG or JPEG.
        for fmt, extra in [("png", []), ("jpg", ["--jpeg"])]:
            out = tmp_path / f"pics-{fmt}"
            env = dict(cli_env, PIPELOGIC_KEYS=str(tmp_path / "keys")) if keys else cli_env
            done = subprocess.run(
                [
                    *up_args(Path("x"))[:3],
                    "tap",
                    "webcam",
                    "--broker",
                    run.endpoint(),
                    "-n",
                    "2",
                    "--save",
                    str(out),
                    *extra,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            files = sorted(out.iterdir())
            assert [f.name for f in files] == [f"000001.{fmt}", f"000002.{fmt}"]
            with PILImage.open(files[0]) as saved:
                assert saved.size == (320, 240) and saved.format == ("PNG" if fmt == "png" else "JPEG")
            line = json.loads(done.stdout.splitlines()[0])
            assert line["pictures"] == [f"000001.{fmt}"] and line["value"]["data"] == "<230,400 bytes>"
    finally:
        code = run.stop()
    assert code in (0, 130), "".join(run.lines)


def test_a_view_off_loopback_is_warned_about_and_a_taken_port_is_a_clear_failure(tmp_path, cli_env):
    f = tmp_path / "pipeline.yml"
    f.write_text(PIPELINE.format(examples=ROOT / "examples"))
    broker = BrokerProc(f, cli_env, "--ui", "0.0.0.0:0")
    try:
        wait_until(lambda: any("not on loopback" in line for line in broker.lines), what="the warning")
    finally:
        broker.stop()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*up_args(f)[:2], "backend_stub", str(f), "--listen", "tcp://127.0.0.1:0", "--ui", str(port)],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 5 and f"cannot serve the web view on {port}" in done.stderr, done.stderr


def browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("PIPELOGIC_REQUIRE_BROWSER") == "1":
            pytest.fail(
                "PIPELOGIC_REQUIRE_BROWSER=1 but chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
            )
        pytest.skip("needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,820"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def test_the_page_in_a_real_browser(tmp_path, cli_env):
    from selenium.webdriver.common.by import By

    SHOTS.mkdir(parents=True, exist_ok=True)
    run = VisionRun(tmp_path, cli_env)
    driver = browser()
    try:
        driver.get(run.url + "/")
        find = driver.find_elements

        def css(selector):
            return wait_until(lambda: find(By.CSS_SELECTOR, selector), timeout_s=30, what=selector, interval=0.2)

        # Every vertex and edge is an element naming itself and its figures.
        wait_until(
            lambda: len(find(By.CSS_SELECTOR, ".vertex")) == 4 and len(find(By.CSS_SELECTOR, ".edge")) == 3,
            what="the graph",
        )
        names = {e.get_attribute("data-vertex") for e in find(By.CSS_SELECTOR, ".vertex")}
        assert names == {"webcam", "finder", "boxes", "rows"}
        camera_edge = '.edge[data-edge="webcam.0->finder.0"]'
        wait_until(
            lambda: float(find(By.CSS_SELECTOR, camera_edge)[0].get_attribute("data-rate") or 0) > 0,
            what="the camera edge's rate to rise above zero",
            interval=0.2,
        )
        label = find(By.CSS_SELECTOR, camera_edge)[0].get_attribute("aria-label")
        assert re.search(r"stream webcam\.0 to finder\.0 \(Image\): [0-9.]+ messages/s", label), label
        assert "running" in find(By.CSS_SELECTOR, '.vertex[data-vertex="finder"]')[0].get_attribute("aria-label")
        assert find(By.ID, "run-state")[0].text == "running"
        driver.save_screenshot(str(SHOTS / "graph.png"))

        # An Image edge: the picture at the frame's size.
        find(By.CSS_SELECTOR, camera_edge)[0].click()
        img = css("#tap-picture")[0]
        assert (img.get_attribute("data-width"), img.get_attribute("data-height")) == ("320", "240")
        wait_until(
            lambda: driver.execute_script("return document.getElementById('tap-picture').naturalWidth") == 320,
            what="the picture decoded",
        )
        driver.save_screenshot(str(SHOTS / "tap-picture.png"))

        # The boxes edge: boxes drawn over the camera's picture.
        find(By.CSS_SELECTOR, '.edge[data-edge="finder.0->boxes.0"]')[0].click()
        css("#tap-picture-wrap svg rect.box")
        driver.save_screenshot(str(SHOTS / "tap-boxes.png"))

        # A vertex: its config form; a change reaches the worker (config.sync() reports it).
        find(By.CSS_SELECTOR, '.vertex[data-vertex="finder"]')[0].click()
        field = css("#cfg-threshold")[0]
        assert field.get_attribute("type") == "number"  # typed by config_schema (Int64)
        assert css("#cfg-label")[0].get_attribute("readonly") is None
        field.clear()
        field.send_keys("150")
        find(By.CSS_SELECTOR, "#config-form button[type=submit]")[0].click()
        wait_until(
            lambda: find(By.ID, "config-result")[0].text.startswith("applied: version"),
            what="the form's answer",
            context=lambda: find(By.ID, "config-result")[0].text,
        )
        wait_until(
            lambda: "config applied: threshold=150" in find(By.ID, "log")[0].text,
            what="the worker's line in the page's log",
            context=lambda: find(By.ID, "log")[0].text + "\n" + (run.state / "logs" / "finder.log").read_text(),
        )
        driver.save_screenshot(str(SHOTS / "vertex-config.png"))
        # The camera's fixed keys are shown, not editable.
        find(By.CSS_SELECTOR, '.vertex[data-vertex="webcam"]')[0].click()
        assert css("#cfg-frames")[0].get_attribute("readonly") is not None
    finally:
        driver.quit()
        code = run.stop()
    assert code in (0, 130), "".join(run.lines)
