"""An external sink through virtual_out: each frame's summary goes to an 'external
system' (a file here) from a runtime thread, with acknowledgements for backpressure."""

import json
from pathlib import Path

from pipelogic.worker import config, run, virtual_out

target = Path(str(config.target))
target.parent.mkdir(parents=True, exist_ok=True)
sink = target.open("w")


def upload(item, tag):
    sink.write(json.dumps(item) + "\n")
    sink.flush()
    virtual_out.ack(tag)  # acknowledged: the runtime may hand out more


def emit(image):
    brightness = sum(image.data) // len(image.data)
    return {"output": brightness, "virtual_output": [{"w": image.width, "h": image.height, "brightness": brightness}]}


virtual_out.set_on_push(upload)
run(emit, use_virtual_output=True)
