"""The components each case runs, written into a temporary folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

PAYLOAD = b"x" * 50  # with the header msgpack makes it about 64 bytes
FRAME_SHAPE = (1080, 1920, 3)  # 1080p BGR: 6,220,800 bytes

COMPONENTS = {
    "double": (
        "Int64",
        "Int64",
        """
        from pipelogic.worker import run
        run(lambda x: x * 2)
    """,
    ),
    "acc": (
        "Int64",
        "Int64",
        """
        from pipelogic.worker import run
        def f(x, state):
            return {"output": x * 2, "state": state + x}
        run(f, initial_state=0)
    """,
    ),
    "camera": (
        None,
        "Image",
        """
        import threading
        import numpy as np
        from pipelogic.cv import Image
        from pipelogic.worker import config, run, virtual_in
        POOL = [np.full((1080, 1920, 3), i, np.uint8) for i in range(4)]
        def grab():
            for n in range(int(config.frames)):
                virtual_in.push(Image.from_numpy(POOL[n % 4], format="BGR"), blocking=True)
            virtual_in.close()
        def from_camera(virtual_input):
            return virtual_input[0]
        threading.Thread(target=grab, daemon=True).start()
        run(from_camera)
    """,
    ),
    "frame_double": (
        "Image",
        "Image",
        """
        from pipelogic.cv import Image
        from pipelogic.worker import run
        run(lambda img: Image.from_numpy(img.to_numpy() * 2, format="BGR"))
    """,
    ),
    # The same two components building their outputs in loaned buffers (pipelogic.worker.loan):
    # the camera's "grab" writes the frame into one, the worker multiplies into one.
    "camera_loan": (
        None,
        "Image",
        """
        import threading
        import numpy as np
        from pipelogic.cv import Image
        from pipelogic.worker import config, loan, run, virtual_in
        POOL = [np.full((1080, 1920, 3), i, np.uint8) for i in range(4)]
        def grab():
            for n in range(int(config.frames)):
                frame = loan((1080, 1920, 3))
                np.copyto(frame, POOL[n % 4])  # what a capture writes
                virtual_in.push(Image.from_numpy(frame, format="BGR"), blocking=True)
            virtual_in.close()
        def from_camera(virtual_input):
            return virtual_input[0]
        threading.Thread(target=grab, daemon=True).start()
        run(from_camera)
    """,
    ),
    "frame_double_loan": (
        "Image",
        "Image",
        """
        import numpy as np
        from pipelogic.cv import Image
        from pipelogic.worker import loan, run
        def double(img):
            out = loan((1080, 1920, 3))
            np.multiply(img.to_numpy(), 2, out=out)
            return Image.from_numpy(out, format="BGR")
        run(double)
    """,
    ),
    # The latency case: a camera writing its push time into each 720p frame (blocking: a
    # file played as fast as the pipeline takes it; or live at `fps`, never waiting), a model
    # that takes 0.2-0.4 s a frame, and a stage that says how old each frame is on arrival.
    "camera_stamped": (
        None,
        "Image",
        """
        import struct, threading, time
        import numpy as np
        from pipelogic.cv import Image
        from pipelogic.worker import config, run, virtual_in
        def grab():
            fps = float(config.fps)
            start = time.time()
            for n in range(int(config.frames)):
                if fps:
                    time.sleep(max(0.0, start + n / fps - time.time()))
                frame = np.zeros((720, 1280, 3), np.uint8)
                frame.reshape(-1)[:8] = np.frombuffer(struct.pack("<d", time.time()), np.uint8)
                virtual_in.push(Image.from_numpy(frame, format="BGR"), blocking=not fps)
            virtual_in.close()
        def from_camera(virtual_input):
            return virtual_input[0]
        threading.Thread(target=grab, daemon=True).start()
        run(from_camera)
    """,
    ),
    "slow_model": (
        "Image",
        "Image",
        """
        import random, time
        from pipelogic.worker import run
        rng = random.Random(7)
        def detect(img):
            time.sleep(rng.uniform(0.2, 0.4))  # a model that takes 0.2-0.4 s a frame
            return img
        run(detect)
    """,
    ),
    "frame_age": (
        "Image",
        "Double",
        """
        import struct, time
        from pipelogic.worker import run
        def age(img):
            pushed = struct.unpack("<d", img.to_numpy().reshape(-1)[:8].tobytes())[0]
            return time.time() - pushed
        run(age)
    """,
    ),
    "sleep10": (
        "Int64",
        "Int64",
        """
        import time
        from pipelogic.worker import run
        def f(x):
            time.sleep(0.010)  # a model that takes 10 ms a message (sleeping: no core needed)
            return x * 2
        run(f)
    """,
    ),
    "blob": (
        "Int64",
        "Bytes",
        """
        from pipelogic.worker import run
        run(lambda x: bytes(1_300_000))
    """,
    ),
    "stall": (
        "Bytes",
        "Int64",
        """
        import time
        from pipelogic.worker import run
        def f(b):
            time.sleep(3600)  # a consumer that stopped: the broker must not buffer without bound
            return 0
        run(f)
    """,
    ),
}


def make_components(base: Path) -> dict[str, Path]:
    out = {}
    for name, (tin, tout, main) in COMPONENTS.items():
        d = base / name
        (d / "src").mkdir(parents=True)
        lines = [f"name: {name}", "language: py", "worker:", f"  output_type: {tout}"]
        if tin:
            lines.append(f"  input_type: {tin}")
        if name.startswith("camera"):
            lines += ["  config_schema:", "    frames: {type: Int64, default: 10}"]
            if name == "camera_stamped":
                lines.append("    fps: {type: Double, default: 0.0}")
        (d / "component.yml").write_text("\n".join(lines) + "\n")
        (d / "src" / "main.py").write_text(textwrap.dedent(main))
        out[name] = d
    return out
