"""Interpret speed on the bundled Fashion-MNIST models (small CNNs), on this machine.

    python benchmarks/interpret_speed.py [--images 1000]

1. Maximal class activation, 10 classes x 500 steps (the "advlab" preset): the first call (graph
   tracing included) and a second one.
2. A 200-frame class traversal (199 sign steps, a frame each) with labelled frames and MP4 export.
3. Attack and BTR ARA on `--images` test images with seed 004's defaults (450 steps, eps 20,
   momentum 0.9), both criteria, first call.
Targets (issue 6): under 10 s, under 10 s, under 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from advcore import models  # noqa: E402
from advcore.interpret import explain, gradient_ascent, video
from advcore.storage import data

MODELS = ("standard", "pgd-linf")


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()
    dataset = data.load("fashion_mnist")
    ascent, start = gradient_ascent.ACTIVATION_PRESETS["advlab"]
    frames = gradient_ascent.TRAVERSAL.replace(steps=199)
    indices = explain.sample_indices(args.images, len(dataset.test))
    print(f"{'model':<18} {'activations 10x500 (first / again)':>36} {'200-frame traversal + MP4':>27} "
          f"{f'ARA on {args.images} images':>20}")
    for name in MODELS:
        model = models.load(ROOT / "assets" / "models" / name / "model.keras")

        def activations():
            return gradient_ascent.maximal_activations(model, range(10), ascent, start=start,
                                                       images=dataset.train.x[:5000])

        first, _ = timed(activations)
        again, _ = timed(activations)
        traversal, mp4 = timed(lambda: video.encode_mp4(video.traversal_frames(
            gradient_ascent.traverse(model, dataset.test.x[0], 2, frames), dataset.class_names)))
        ara_seconds, result = timed(lambda: explain.ara(model, dataset.test.x[indices], dataset.test.y[indices]))
        print(f"{name:<18} {first:>17.2f} s / {again:>6.2f} s {traversal:>25.2f} s {ara_seconds:>18.1f} s"
              f"   (Attack ARA {result.attack_ara:.4f}, BTR ARA {result.btr_ara:.4f}, MP4 {len(mp4) // 1024} KiB)")


if __name__ == "__main__":
    main()
