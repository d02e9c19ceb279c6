"""A detector stand-in: the box around the pixels brighter than config.threshold (red
channel), and how many rows it spans. Prints each config change it takes."""

from pipelogic.cv import BoundingBox, DetectedClass, Rectangle
from pipelogic.worker import config, run


def find(image):
    changed = config.sync()
    if changed:
        print("config applied: " + ", ".join(f"{k}={v}" for k, v in changed.items()), flush=True)
    w, h, data = image.width, image.height, bytes(image.data)
    limit = int(config.threshold)
    rows = []
    for y in range(0, h, 2):
        reds = data[y * w * 3 : (y + 1) * w * 3 : 3]
        hits = [x for x in range(0, w, 2) if reds[x] > limit]
        if hits:
            rows.append((y, hits[0], hits[-1]))
    if not rows:
        return [], 0
    top, bottom = rows[0][0], rows[-1][0]
    left, right = min(r[1] for r in rows), max(r[2] for r in rows)
    box = BoundingBox(
        DetectedClass(0, str(config.label)),
        0.9,
        Rectangle(float(left), float(top), float(right - left + 2), float(bottom - top + 2)),
    )
    return [box], len(rows)


run(find)
