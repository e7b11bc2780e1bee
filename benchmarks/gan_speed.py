"""GAN speed and the bundled generator's quality, as issue 8 asks:

1. one AC-GAN (WGAN-GP) epoch on all 60,000 Fashion-MNIST training images with the bundled
   generator's config (DCGAN pair, batch 64, 5 critic steps: 187 generator steps);
2. samples/second of the latent attack (500 steps, the seed's count) against the bundled standard
   model, on 256 samples in one batch, with its success rate;
3. the bundled generator's samples, 100 per class, classified by the bundled standard model:
   accuracy per class (the target: 80% or better for each class).

    python benchmarks/gan_speed.py [--skip-epoch]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from advcore import models  # noqa: E402
from advcore.generative import acgan, unrestricted
from advcore.storage import data, files
from advcore.training.config import GanConfig  # noqa: E402

GAN_FOLDER = ROOT / "assets" / "generators" / "fashion_mnist"
STANDARD = ROOT / "assets" / "models" / "standard" / "model.keras"


def gan_epoch_seconds() -> tuple[float, int]:
    config = GanConfig.from_dict(files.read_json(GAN_FOLDER / "config.json") | {"epochs": 1})
    dataset = data.load("fashion_mnist")
    keras.utils.set_random_seed(0)
    generator, critic = acgan.build(config, dataset.input_shape, dataset.num_classes)
    trainer = acgan.ACGANTrainer(generator, critic, config, dataset.num_classes)
    trainer.compile()
    steps = acgan.steps_per_epoch(len(dataset.train), config)
    batches = acgan.real_batches(dataset.train, config)
    trainer.fit(batches, steps_per_epoch=5, epochs=1, verbose=0)  # tracing, kept out of the timing
    started = time.perf_counter()
    trainer.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - started, steps


def main() -> None:
    gan = acgan.load(GAN_FOLDER)
    classifier = models.load(STANDARD)
    if "--skip-epoch" not in sys.argv:
        seconds, steps = gan_epoch_seconds()
        print(f"GAN epoch, 60,000 images, {steps} generator steps x 5 critic steps: {seconds:.1f} s "
              f"({seconds / steps * 1000:.0f} ms per generator step)")
    source = np.arange(256) % 10
    settings = unrestricted.LatentAttack(steps=500)
    unrestricted.attack(gan, classifier, source[:8], settings=settings)  # tracing
    result = unrestricted.attack(gan, classifier, source, settings=settings, seed=1)
    print(f"latent attack, 500 steps, 256 samples: {result.seconds:.1f} s = {256 / result.seconds:.1f} samples/s; "
          f"success {result.success_rate:.1%} (classifier wrong, GAN's classifier still the source class)")
    labels = np.repeat(np.arange(10), 100)
    predictions = classifier.predict(gan.generate(gan.latents(1000, 2), labels), verbose=0).argmax(-1)
    print("bundled generator's samples (100 per class) classified by the bundled standard model:")
    for label, name in enumerate(gan.class_names):
        print(f"  {name:<12} {np.mean(predictions[labels == label] == label):.0%}")
    print(f"  all          {np.mean(predictions == labels):.1%}")


if __name__ == "__main__":
    main()
