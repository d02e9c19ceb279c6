"""Reads config: keeps the boxes above `threshold` and describes them in `language`."""

from pipelogic.worker import config, run

WORDS = {"en": "boxes", "fr": "boîtes", "de": "Kästen"}


def describe(boxes):
    changed = config.sync()
    if changed:
        print(f"config changed: {sorted(changed)}", flush=True)
    threshold = float(config.threshold)
    mean = tuple(config.mean)
    kept = [b for b in boxes if b.confidence >= threshold]
    return f"{len(kept)} {WORDS.get(str(config.language), 'boxes')} (mean {mean[0]:.2f})"


run(describe)
