"""The web view's plain parts: pictures and boxes found in values, the graph and the live
figures, tap values with their pictures, the loop bridge. No sockets."""

import io
import threading
from pathlib import Path

import pytest
from PIL import Image as PILImage

from backend_stub.scheduler import Settings
from backend_stub.ui.bridge import PREFIX, LoopBridge
from backend_stub.ui.views import Rates, graph_of, log_tail, tap_values, vertex_detail
from backend_stub.vertices import SinkVertex, vertex_state
from pipelogic import protocol as P
from pipelogic.cv import BoundingBox, DepthImage, DetectedClass, Image, Rectangle
from pipelogic.jsonform import to_display
from pipelogic.pictures import boxes, encode_jpeg, encode_png, pictures
from pipelogic.pipeline import load_pipeline
from pipelogic.types import encode_frame

ROOT = Path(__file__).resolve().parents[2]


def rgb_image(w: int, h: int, fmt: str = "RGB") -> Image:
    """Each pixel's channels say where it is: (x, y, x + y) mod 256 in RGB order."""
    px = bytearray()
    for y in range(h):
        for x in range(w):
            r, g, b = x % 256, y % 256, (x + y) % 256
            px += bytes((b, g, r) if fmt == "BGR" else (r, g, b))
    return Image(width=w, height=h, format=fmt, data=bytes(px))


def decoded_png(data: bytes) -> PILImage.Image:
    img = PILImage.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize("fmt", ["RGB", "BGR"])
def test_a_picture_keeps_its_pixels_and_their_order(fmt):
    (pic,) = pictures(rgb_image(7, 5, fmt))
    img = decoded_png(encode_png(pic))
    assert img.size == (7, 5) and img.mode == "RGB"
    for x, y in [(0, 0), (6, 4), (3, 2)]:
        assert img.getpixel((x, y)) == (x, y, x + y)


def test_a_large_picture_is_scaled_by_whole_steps_and_sampled_exactly():
    (pic,) = pictures(rgb_image(1280, 720), max_side=320)
    assert (pic.width, pic.height, pic.source_width, pic.source_height) == (320, 180, 1280, 720)
    img = decoded_png(encode_png(pic))
    assert img.getpixel((10, 7)) == (40 % 256, 28, (40 + 28) % 256)  # pixel (40, 28) of the source


def test_gray_and_depth_pictures():
    gray = Image(width=4, height=2, format="GRAY", data=bytes(range(8)))
    (pic,) = pictures(gray)
    img = decoded_png(encode_png(pic))
    assert img.mode == "L" and img.getpixel((3, 1)) == 7
    depth = DepthImage(
        width=3,
        height=1,
        scale=0.001,
        data=(0).to_bytes(2, "little") + (1000).to_bytes(2, "little") + (3000).to_bytes(2, "little"),
    )
    (d,) = pictures(depth)
    assert d.kind == "DepthImage" and d.pixels[0] == 0  # no reading: black
    assert d.pixels[1] > d.pixels[2]  # nearer is brighter


def test_jpeg_is_a_jpeg_of_the_size_shown():
    (pic,) = pictures(rgb_image(64, 48), max_side=32)
    img = decoded_png(encode_jpeg(pic))
    assert img.format == "JPEG" and img.size == (32, 24)


def test_pictures_and_boxes_are_found_inside_records_lists_and_tuples_and_malformed_ones_skipped():
    frame = {"image": rgb_image(4, 4), "timestamp": 1}
    short = {"width": 100, "height": 100, "format": "RGB", "data": b"xx"}
    box = BoundingBox(DetectedClass(3, "cat"), 0.75, Rectangle(1.0, 2.0, 3.0, 4.0))
    value = ([box, box], frame, [short])
    found = pictures(value)
    assert [p.path for p in found] == ["[1].image"]
    bs = boxes(value)
    assert len(bs) == 2 and (bs[0].x, bs[0].height, bs[0].label, bs[0].confidence) == (1.0, 4.0, "cat", 0.75)


def test_display_json_shows_long_bytes_by_size():
    shown = to_display({"data": b"x" * 1000, "small": b"ab", "n": 1.5})
    assert shown == {"data": "<1,000 bytes>", "small": "YWI=", "n": 1.5}


@pytest.fixture
def vision(tmp_path):
    """The example's pipeline and its vertices' states, its sink files in ``tmp_path``."""
    text = (ROOT / "examples" / "vision" / "pipeline.yml").read_text()
    text = text.replace("../", str(ROOT / "examples") + "/")
    (tmp_path / "pipeline.yml").write_text(text)
    pipeline = load_pipeline(tmp_path / "pipeline.yml")
    states = {n: vertex_state(pipeline, n, True, Settings.from_pipeline(pipeline)) for n in pipeline.order}
    yield pipeline, states
    for vs in states.values():
        if isinstance(vs, SinkVertex):
            vs.sink.close()


def test_the_graph_names_every_vertex_and_edge_and_where_boxes_are_drawn(vision):
    pipeline, states = vision
    g = graph_of(pipeline, states)
    assert [v["name"] for v in g["vertices"]] == ["webcam", "finder", "boxes", "rows"]
    edges = {e["id"]: e for e in g["edges"]}
    assert set(edges) == {"webcam.0->finder.0", "finder.0->boxes.0", "finder.1->rows.0"}
    assert edges["webcam.0->finder.0"]["pictures"] and edges["webcam.0->finder.0"]["capacity"] == 1024
    assert edges["finder.0->boxes.0"]["boxes"] and edges["finder.0->boxes.0"]["over"] == "webcam.0"


def test_a_vertex_detail_types_its_config_and_says_what_is_mutable(vision):
    pipeline, states = vision
    d = vertex_detail(pipeline, states["webcam"])
    cfg = {c["key"]: c for c in d["config"]}
    assert cfg["fps"]["mutable"] and cfg["fps"]["type"] == "Double" and cfg["fps"]["value"] == 15
    assert not cfg["frames"]["mutable"]
    sink = vertex_detail(pipeline, states["boxes"])
    assert sink["config"] == [] and sink["params"]["path"] == "./out/boxes.jsonl"


def status(
    counts: dict[str, int], finder_in: int, queue: int, stuck: float = 0.0, ticks: tuple[int, float] = (0, 0.0)
) -> P.StatusReply:
    def v(name, **kw):
        base = {
            "name": name,
            "kind": "component",
            "state": "running",
            "ticks": 0,
            "inflight": 0,
            "restarts": 0,
            "errors": 0,
            "queues": [],
            "rate": 1.0,
            "stuck_s": 0.0,
        }
        return {**base, **kw}

    return P.StatusReply(
        "vision",
        "running",
        [
            v("webcam"),
            v(
                "finder",
                queues=[queue],
                input_bytes=[finder_in],
                stuck_s=stuck,
                dead_lettered=2,
                tick_seconds={"le": [0.1], "counts": [ticks[0], ticks[0]], "sum": ticks[1]},
            ),
            v("boxes", queues=[0]),
            v("rows", queues=[0]),
        ],
        [{"from": k, "to": [], "count": n} for k, n in counts.items()],
        None,
        {"refused": {"x": 3}, "store_error": None},  # type: ignore[arg-type]
    )


def test_rates_are_per_second_over_a_window_and_queues_and_states_are_read_as_they_are(vision):
    pipeline, states = vision
    r = Rates(graph_of(pipeline, states))
    r.update(status({"webcam.0": 0, "finder.0": 0, "finder.1": 0}, 0, 0, ticks=(10, 1.0)), 10.0)
    snap = r.update(
        status({"webcam.0": 30, "finder.0": 20, "finder.1": 20}, 3_000_000, 7, stuck=12.0, ticks=(30, 3.0)), 12.0
    )
    e = snap["edges"]["webcam.0->finder.0"]
    assert (e["rate"], e["bytes_rate"], e["queue"], e["capacity"], e["count"]) == (15.0, 1_500_000, 7, 1024, 30)
    assert snap["edges"]["finder.0->boxes.0"]["rate"] == 10.0
    assert snap["vertices"]["finder"]["state"] == "stuck" and snap["vertices"]["finder"]["lost"] == {"dead_lettered": 2}
    assert snap["refused"] == 3
    assert snap["vertices"]["finder"]["tick_s"] == pytest.approx(0.1)  # (3.0 - 1.0) s over 20 ticks: the window's
    assert snap["vertices"]["webcam"]["tick_s"] is None  # no histogram: nothing made up
    # Within the window the last rates stand (no division by a tiny interval).
    again = r.update(status({"webcam.0": 31, "finder.0": 21, "finder.1": 21}, 3_100_000, 0, ticks=(31, 9.0)), 12.2)
    assert again["edges"]["webcam.0->finder.0"]["rate"] == 15.0
    assert again["vertices"]["finder"]["tick_s"] == pytest.approx(0.1)


def tap_reply(type_text: str, first: int, values: list) -> tuple[P.TapReply, list]:
    layout, payload = [], []
    for x in values:
        frame, bufs = encode_frame(x, type_text)
        layout.append(len(bufs))
        payload += [frame, *bufs]
    return P.TapReply(type_text, first, layout, 0, first + len(values), False), payload


def test_tap_values_encode_only_the_newest_picture_and_draw_boxes_over_the_picture_they_were_found_in():
    frames = [rgb_image(8 + i, 6) for i in range(3)]  # told apart by their width
    reply, payload = tap_reply("Image", 10, frames)
    out = tap_values(reply, payload, 480, jpeg=False)
    assert [bool(v["pictures"]) for v in out["values"]] == [False, False, True]
    (pic,) = out["values"][2]["pictures"]
    assert pic["src"].startswith("data:image/png;base64,") and pic["source_width"] == 10
    assert out["values"][2]["value"]["data"] == "<180 bytes>"

    box = BoundingBox(DetectedClass(0, "sq"), 0.9, Rectangle(1.0, 1.0, 2.0, 2.0))
    b_reply, b_payload = tap_reply("[BoundingBox]", 10, [[box], [box], []])
    out = tap_values(b_reply, b_payload, 480, jpeg=False, over=(reply, payload))
    # The newest value with boxes is message 11: drawn over picture 11, not the newest (12).
    assert out["over"]["index"] == 11 and out["over"]["matched"] and out["over"]["pictures"][0]["source_width"] == 9
    assert out["over"]["boxes"][0]["label"] == "sq"
    # Its picture gone from the poll: the newest, said so.
    late_reply, late_payload = tap_reply("Image", 12, frames[2:])
    out = tap_values(b_reply, b_payload, 480, jpeg=False, over=(late_reply, late_payload))
    assert out["over"]["index"] == 12 and not out["over"]["matched"]


def test_log_tail_reads_a_vertex_and_its_replicas(tmp_path):
    (tmp_path / "finder.log").write_text("".join(f"line {i}\n" for i in range(300)))
    (tmp_path / "model#1.log").write_text("a\n")
    (tmp_path / "model#2.log").write_text("b\n")
    (tmp_path / "finder2.log").write_text("not this one\n")
    assert log_tail(tmp_path, "finder", 3) == ["line 297", "line 298", "line 299"]
    assert log_tail(tmp_path, "model") == ["model#1 | a", "model#2 | b"]
    assert log_tail(None, "finder") == [] and log_tail(tmp_path / "nope", "finder") == []


def test_the_bridge_runs_calls_on_the_loop_thread_and_routes_replies_by_client_id():
    bridge = LoopBridge()
    seen = []
    result = []
    t = threading.Thread(
        target=lambda: result.append(bridge.call(lambda: seen.append(threading.current_thread()) or 42))
    )
    t.start()
    while not bridge.calls:
        pass
    bridge.run_pending()  # "the loop"
    t.join(5)
    assert result == [42] and seen == [threading.current_thread()]

    cid, fut = bridge.client()
    assert cid.startswith(PREFIX) and len(cid) > 5  # never a ROUTER's own 5-byte id
    bridge.deliver(cid, [b"a", memoryview(b"b")])
    assert fut.result(1) == [b"a", b"b"]
    bridge.deliver(cid, [b"again"])  # answered already: dropped

    failing = threading.Thread(target=lambda: result.append(_raises(lambda: bridge.call(lambda: 1 / 0))))
    failing.start()
    while not bridge.calls:
        pass
    bridge.run_pending()
    failing.join(5)
    assert isinstance(result[-1], ZeroDivisionError)

    _, fut2 = bridge.client()
    bridge.close()
    with pytest.raises(ConnectionError):
        fut2.result(1)
    with pytest.raises(ConnectionError):  # at once, not after a timeout: nobody runs calls now
        bridge.call(lambda: 1, timeout_s=30)


def _raises(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return exc
    return None
