"""Seed 004's options and the CIFAR input pipeline: what each costs per batch, what the data feeds.

Prints (1) images/second of the CIFAR input pipeline alone (50,000 32x32x3 images in memory,
batch 128, no augmentation and crop+flip), and (2) seconds per training batch of 128 CIFAR-shaped
images on woods_resnet44 for plain training and for each option of seed 004 (after two traced
batches, the median of `--batches`), with the ratio to plain training, plus DenseNet-BC-100.

    python benchmarks/woods_speed.py [--batches 5] [--pipeline-batches 400]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from advcore import models  # noqa: E402
from advcore.storage import data  # noqa: E402
from advcore.training.config import TrainConfig  # noqa: E402
from advcore.training.trainer import AdversarialTrainer, make_optimizer, training_batches  # noqa: E402

BATCH = 128
HALF_HUBER = {"model": {"architecture": "woods_resnet44", "activation": "half_huber"}}
OPTIONS = {
    "plain (vanilla)": {"mode": "vanilla"},
    "rmse_ball, 7 steps (--adversarial-training)": {"attack": {"method": "rmse_ball", "eps": 0.01}},
    "l2_min, 7 steps": {"attack": {"method": "l2_min", "eps": 0.1}},
    "half-Huber ReLU only": {"mode": "vanilla", **HALF_HUBER},
    "Lipschitz penalty (double backprop), half-Huber": {"mode": "vanilla", "lipschitz": {"enabled": True},
                                                        **HALF_HUBER},
    "all: l2_min on half the batch + Lipschitz + half-Huber": {
        "mode": "split", "attack": {"method": "l2_min", "eps": 0.1}, "lipschitz": {"enabled": True}, **HALF_HUBER},
    "densenet_bc (depth 100, k 12), plain": {"mode": "vanilla", "model": {"architecture": "densenet_bc"}},
}


def pipeline_speed(batches: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (50_000, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 50_000)
    speeds = {}
    for augment in ("none", "crop_flip"):
        stream = iter(training_batches(data.Split(x, y), BATCH, seed=0, augment=augment))
        for _ in range(20):
            next(stream)
        started = time.perf_counter()
        for _ in range(batches):
            next(stream)
        speeds[augment] = batches * BATCH / (time.perf_counter() - started)
    return speeds


class BatchTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.started)


def seconds_per_batch(content: dict, batches: int) -> float:
    config = TrainConfig.from_dict({"batch_size": BATCH, "model": {"architecture": "woods_resnet44"}, **content})
    keras.utils.set_random_seed(0)
    classifier = models.build(config.model.architecture, (32, 32, 3), 10, activation=config.model.activation)
    trainer = AdversarialTrainer(classifier, config, steps_per_epoch=batches + 2)
    trainer.compile(optimizer=make_optimizer(config, batches + 2))
    trainer.adversarial_phase.assign(config.adversarial)
    rng = np.random.default_rng(1)
    data = tf.data.Dataset.from_tensors((rng.uniform(0, 1, (BATCH, 32, 32, 3)).astype(np.float32),
                                         rng.integers(0, 10, BATCH))).repeat()
    timer = BatchTimer()
    trainer.fit(data, steps_per_epoch=batches + 2, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    return float(np.median(timer.times[2:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--pipeline-batches", type=int, default=400)
    args = parser.parse_args()
    print(f"CIFAR input pipeline alone (batch {BATCH}, {os.cpu_count()} CPU cores):")
    for augment, speed in pipeline_speed(args.pipeline_batches).items():
        print(f"  {augment:<10} {speed:>9,.0f} images/s")
    print(f"\nseconds per training batch of {BATCH} (32x32x3, woods_resnet44 unless named):")
    plain = None
    for name, content in OPTIONS.items():
        seconds = seconds_per_batch(content, args.batches)
        plain = plain or seconds
        print(f"  {name:<56} {seconds:6.2f} s  {seconds / plain:5.2f}x plain")


if __name__ == "__main__":
    main()
