"""Randomized smoothing's speed, in one run on the same images: noisy samples per second of
`advcore.certification` against the model's plain compiled forward pass over the same number of
images (target >= 0.9x), and its CERTIFY against IBM ART's `TensorFlowV2RandomizedSmoothing.certify`
at the same n0, n and batch size (target >= 5x; ART builds every noisy copy in host NumPy).

    python benchmarks/certify_speed.py [--model assets/models/standard/model.keras] [--images 20] [--n 10000]
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

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from advcore import devices, graphs, models  # noqa: E402
from advcore.certification import sampling, smoothing  # noqa: E402
from advcore.storage import data  # noqa: E402


def seconds(work) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "assets" / "models" / "standard" / "model.keras")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--sigma", type=float, default=0.25)
    args = parser.parse_args()
    devices.configure(None)
    model = models.load(args.model)
    x = data.load("fashion_mnist", test_size=args.images, splits=("test",)).test.x
    batch = sampling.default_batch(x.shape[1:])
    setting = smoothing.Smoothing(args.sigma, n0=100, n=args.n)
    smoothing.certify(model, x[:1], setting, batch_size=batch)  # traces the loop once
    ours = seconds(lambda: smoothing.certify(model, x, setting, batch_size=batch))
    draws = args.images * (setting.n0 + setting.n)

    forward, copies = graphs.forward(model), tf.constant(np.repeat(x[:1], batch, axis=0))
    forward(copies)
    passes = -(-draws // batch)
    plain = seconds(lambda: [forward(copies).numpy() for _ in range(passes)])
    ours_rate, plain_rate = draws / ours, passes * batch / plain
    print(f"{draws:,} noisy samples in {ours:.2f} s: {ours_rate:,.0f}/s; the plain forward pass: "
          f"{plain_rate:,.0f} images/s; ratio {ours_rate / plain_rate:.2f}x "
          f"(target >= 0.9x; {batch:,} copies per pass, on {tf.config.list_logical_devices()[-1].name})")

    from art.estimators.certification.randomized_smoothing import TensorFlowV2RandomizedSmoothing

    art = TensorFlowV2RandomizedSmoothing(model, nb_classes=int(model.outputs[0].shape[-1]),
                                          input_shape=tuple(x.shape[1:]), sample_size=setting.n0,
                                          scale=setting.sigma, alpha=setting.alpha)
    art.certify(x[:1], n=setting.n0, batch_size=batch)
    theirs = seconds(lambda: art.certify(x, n=setting.n, batch_size=batch))
    print(f"CERTIFY of {args.images} images at n = {setting.n:,}: AdvLab {ours:.2f} s, ART {theirs:.2f} s: "
          f"{theirs / ours:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
