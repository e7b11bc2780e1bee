"""Streamed image folders against in-memory arrays, and the folder pipeline at scale.

overhead: Fashion-MNIST's training images (`--images`, default all 60,000) written as a PNG folder, then
the epoch time of vanilla and PGD-7 training (small CNN, batch 128) from the folder and from memory,
alternating, in one process; the fastest epoch after the first (which traces) of each is reported, and
their ratio (target: streamed <= 1.1x in-memory).

scale: `--jpegs` JPEG photos-like images (default 100,000) of random sizes from 192 to 320 px, read at 224
x 224 in one shuffled pass of the training pipeline, in a fresh process (after the folder's one-off
decoding check, timed apart); then the folder doubled and read again. Prints images/s and each
process's peak RSS (target: < 2 GB, and the same for the doubled folder).

    python benchmarks/data_speed.py [overhead|scale|both] [--images N] [--jpegs N] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

BATCH, EPOCHS, SIDE = 128, 3, 224


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- overhead

def write_png_folder(split, names, root: Path) -> None:
    from advcore.storage import images

    for label, name in enumerate(names):
        (root / f"{label:02d}-{name.replace('/', '-')}").mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(split.x, split.y)):
        images.write_png(root / f"{label:02d}-{names[label].replace('/', '-')}" / f"{index:05d}.png", image)


def epoch_seconds(split, mode: str) -> float:
    import keras

    from advcore import models
    from advcore.training.config import TrainConfig
    from advcore.training.trainer import AdversarialTrainer, batches_per_epoch, training_batches

    class Timer(keras.callbacks.Callback):
        seconds: list = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    keras.utils.set_random_seed(0)
    config = TrainConfig.from_dict({"mode": mode, "batch_size": BATCH, "attack": {"method": "pgd", "steps": 7}})
    steps = batches_per_epoch(len(split), BATCH)
    trainer = AdversarialTrainer(models.small_cnn(), config, steps)
    trainer.compile(optimizer="adam")
    trainer.adversarial_phase.assign(mode != "vanilla")
    timer = Timer()
    timer.seconds = []
    trainer.fit(training_batches(split, BATCH, 0), steps_per_epoch=steps, epochs=EPOCHS, verbose=0, shuffle=False,
                callbacks=[timer])
    return min(timer.seconds[1:])


def overhead(images: int, work: Path) -> None:
    from advcore.storage import data

    memory = data.load("fashion_mnist", splits=("train",)).train.take(slice(0, images))
    folder = work / f"fashion-png-{images}"
    if not folder.is_dir():
        started = time.perf_counter()
        write_png_folder(memory, data.FASHION_MNIST_CLASSES, folder / "part")
        print(f"wrote {images:,} PNGs in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    streamed = data.load_image_folder(folder / "part", test_fraction=0.0001, splits=("train",)).train
    print(f"opened the folder (listing and decoding check) in {time.perf_counter() - started:.1f} s: "
          f"{len(streamed):,} training images")
    memory = memory.take(slice(0, len(streamed)))  # the same count (a few went to the folder's test split)
    for mode in ("vanilla", "adversarial"):
        in_memory, from_folder = epoch_seconds(memory, mode), epoch_seconds(streamed, mode)
        name = "vanilla" if mode == "vanilla" else "PGD-7"
        print(f"{name:8s} in memory {in_memory:6.2f} s/epoch   streamed {from_folder:6.2f} s/epoch   "
              f"ratio {from_folder / in_memory:.3f}x (target <= 1.1x)")
    print(f"peak RSS of this process: {peak_rss_mb():,.0f} MB")


# ----------------------------------------------------------------------------- scale

def _write_jpegs(job: tuple[str, int, int]) -> None:
    """Photo-like JPEGs (smooth colour fields with a few shapes, random sizes) numbered start..stop."""
    from PIL import Image, ImageDraw

    folder, start, stop = job
    rng = np.random.default_rng(start)
    for index in range(start, stop):
        height, width = rng.integers(192, 321, 2)
        ramp = np.linspace(0, 1, width)[None, :, None] * rng.uniform(0, 255, 3) + rng.uniform(0, 128, 3)
        pixels = np.clip(ramp + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = rng.integers(0, width - 40), rng.integers(0, height - 40)
            draw.ellipse((x, y, x + rng.integers(20, 120), y + rng.integers(20, 120)),
                         fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        image.save(Path(folder) / f"class{index % 10}" / f"{index:07d}.jpg", quality=85)


def write_jpeg_folder(root: Path, start: int, stop: int) -> None:
    for label in range(10):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
    chunks = [(str(root), a, min(a + 2000, stop)) for a in range(start, stop, 2000)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write_jpegs, chunks))


def one_pass(folder: str) -> dict:
    """In this process: open the folder (its decoding check, cached after the first time), then read one
    shuffled epoch of 224 x 224 training batches."""
    from advcore.storage import data
    from advcore.training.trainer import batches_per_epoch, training_batches

    started = time.perf_counter()
    train = data.load_image_folder(folder, image_size=SIDE, test_fraction=0.0001, splits=("train",)).train
    opened = time.perf_counter() - started
    steps = batches_per_epoch(len(train), BATCH)
    started, count = time.perf_counter(), 0
    for x, _ in training_batches(train, BATCH, seed=0).take(steps):
        count += int(x.shape[0])
    seconds = time.perf_counter() - started
    return {"images": count, "open_seconds": opened, "images_per_second": count / seconds,
            "peak_rss_mb": peak_rss_mb()}


def measured_pass(folder: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "pass", str(folder)], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scale(jpegs: int, work: Path) -> None:
    folder = work / "jpegs"
    for total in (jpegs, 2 * jpegs):
        present = sum(1 for _ in folder.rglob("*.jpg")) if folder.is_dir() else 0
        if present < total:
            started = time.perf_counter()
            write_jpeg_folder(folder, present, total)
            print(f"wrote {total - present:,} JPEGs in {time.perf_counter() - started:.0f} s")
        first = measured_pass(folder)  # includes the one-off decoding check
        again = measured_pass(folder)  # the check is cached: the pipeline alone
        print(f"{total:>9,} JPEGs: decoding check {first['open_seconds']:.0f} s once; one pass at {SIDE} px "
              f"{again['images_per_second']:,.0f} images/s; peak RSS {first['peak_rss_mb']:,.0f} MB (with the "
              f"check), {again['peak_rss_mb']:,.0f} MB (pass alone); target < 2,000 MB")


def main() -> None:
    if sys.argv[1:2] == ["pass"]:
        print(json.dumps(one_pass(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("overhead", "scale", "both"), default="both")
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--jpegs", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/advlab-data-speed"))
    args = parser.parse_args()
    os.environ.setdefault("ADVLAB_CACHE_DIR", str(args.work / "cache"))
    if args.what in ("overhead", "both"):
        overhead(args.images, args.work)
    if args.what in ("scale", "both"):
        scale(args.jpegs, args.work)


if __name__ == "__main__":
    main()
