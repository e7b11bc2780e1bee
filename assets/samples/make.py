"""Writes the Playground's sample gallery: `python assets/samples/make.py`.

Fashion-MNIST test images made to look like what users upload: enlarged, dark on a light background
(a garment photographed on white paper), with a little sensor noise, saved in each format the
Playground reads. The Playground's inversion and resizing turn them back into model inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np

HERE = Path(__file__).resolve().parent
# file name -> Fashion-MNIST test index (the first image of each chosen class)
SAMPLES = {"ankle-boot.jpg": 0, "pullover.png": 1, "trouser.webp": 2, "shirt.bmp": 4, "sneaker.tiff": 9,
           "bag.gif": 18}
SIZE = 168


def photo_like(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from advcore.storage import preprocess

    large = preprocess.resize(image, SIZE, SIZE)
    paper = 0.93 - 0.75 * large + rng.normal(0, 0.015, large.shape)  # dark garment on off-white paper
    return np.clip(np.rint(paper[..., 0] * 255), 0, 255).astype(np.uint8)


def main() -> None:
    from advcore.storage import data

    test = data.load("fashion_mnist").test
    rng = np.random.default_rng(0)
    for name, index in SAMPLES.items():
        iio.imwrite(HERE / name, photo_like(test.x[index], rng))
        print(f"{name}: test image {index}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))
    main()
