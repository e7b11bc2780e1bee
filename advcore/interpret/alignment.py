"""Perceptual alignment: do a model's self-drawn images look like their class to another model?

"Robust models draw human-like images" becomes a number by asking a judge: a classifier trained
separately (another architecture and seed) and adversarially, so the texture-like noise that
convinces a standard model does not convince it. The judge rates images meant to show a class:
how often it names that class, how confident it is, and how smooth the images are (total variation
per pixel; noise scores high).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from advcore.interpret import gradient_ascent

# The bundled judge of each dataset (trained by `python -m advcore train --config <its folder>/config.json`).
JUDGES = {"fashion_mnist": Path(__file__).resolve().parents[2] / "assets" / "judges" / "fashion_mnist" / "model.keras"}


def judge_path(dataset: str | None) -> Path | None:
    path = JUDGES.get(dataset)
    return path if path is not None and path.exists() else None


def score(judge: keras.Model, images, intended) -> dict:
    """The judge's accuracy and mean confidence for the intended classes, and total variation per pixel."""
    images = np.asarray(images, dtype=np.float32)
    intended = np.asarray(intended).reshape(-1)
    if len(images) != len(intended) or len(images) == 0:
        raise ValueError("need one intended class per image, and at least one image")
    probabilities = tf.nn.softmax(tf.cast(judge(images, training=False), tf.float32)).numpy()
    return {"judge_accuracy": float(np.mean(probabilities.argmax(axis=1) == intended)),
            "judge_confidence": float(np.mean(probabilities[np.arange(len(images)), intended])),
            "total_variation": float(np.mean(gradient_ascent.total_variation(images).numpy()))}
