"""Adversarial explanations and the accuracy-robustness area (ARA) of Woods et al. 2019 (seed 004).

Both run `rmse_descent`: an explanation with the "explain" criterion (delta hovers near the RMSE
ball's edge while the target's confidence rises), ARA with "attack" and "btr" (delta hovers at the
decision boundary and the smallest fooling delta seen is the image's minimal perturbation). Unlike
the seed, an explanation ends projected into its ball, and ARA keeps the smallest crossing instead
of the last iterate.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from advcore import attacks, graphs
from advcore.attacks import rmse_descent
from advcore.attacks.rmse_descent import rmse
from advcore.storage import files, images

_TINY = 1e-8


def _compiled(model: keras.Model, criterion: str, momentum: float):
    image = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    scalar = tf.TensorSpec([], tf.float32)
    signature = [image, tf.TensorSpec([None], tf.int32), scalar, scalar, tf.TensorSpec([], tf.int32)]

    def run(x, labels, eps, overshoot, steps):
        delta, _, best = rmse_descent.descend(model, criterion, x, labels, eps, overshoot, steps, momentum)
        return delta, best

    return graphs.compiled(model, ("woods", criterion, momentum), run, signature)


def _checked(model, x, labels) -> tuple[np.ndarray, np.ndarray]:
    x, labels = attacks.checked_batch(model, x, np.reshape(labels, -1))
    return x, labels.astype(np.int32)


def _check_positive(**values) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")


# ----------------------------------------------------------------------------- explanations

@dataclasses.dataclass(frozen=True)
class Explanation:
    image: np.ndarray  # HWC, the input
    label: int  # its true class
    targets: list[int]  # true class, the most confident other class, then every class
    roles: list[str]  # "real", "second", then "class"
    explanations: np.ndarray  # [targets, H, W, C]
    confidence: np.ndarray  # softmax of every class on the input
    after: np.ndarray  # softmax of each target on its explanation
    rho: float

    def file_names(self, class_names) -> list[str]:
        """Seed 004's names, in this order; p is the class's confidence on the original image."""
        names = []
        for role, target in zip(self.roles, self.targets):
            p = f"{self.confidence[target]:.3f}"
            name = files.safe_name(class_names[target])
            names.append({"real": f"_real_was_{p}.png", "second": f"_second_{name}_was_{p}.png"}.get(
                role, f"{target}_{name}_was_{p}.png"))
        return names

    def write(self, folder: str | Path, class_names) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        images.write_png(folder / "_input.png", self.image)
        for name, picture in zip(self.file_names(class_names), self.explanations):
            images.write_png(folder / name, picture)
        return folder


def explain(model: keras.Model, image, label: int, *, rho: float = 0.1, steps: int = 35, overshoot: float = 5.0,
            momentum: float = 0.0) -> Explanation:
    """Explanations of one image toward its class, the runner-up and every class, each inside RMSE rho."""
    x, (label,) = _checked(model, np.asarray(image)[None], [label])
    _check_positive(rho=rho, steps=steps, overshoot=overshoot)
    logits = model(x, training=False).numpy()[0].astype(np.float64)
    confidence = np.exp(logits - logits.max())
    confidence /= confidence.sum()
    second = int(np.argmax(np.where(np.arange(len(logits)) == label, -np.inf, logits)))
    targets = [int(label), second, *range(len(logits))]
    batch = np.repeat(x, len(targets), axis=0)
    run = _compiled(model, "explain", float(momentum))
    delta, _ = run(batch, np.asarray(targets, np.int32), float(rho), float(overshoot), int(steps))
    delta = delta.numpy()
    delta *= np.minimum(1.0, rho / np.maximum(rmse(delta), _TINY))[:, None, None, None]  # end inside the ball
    explained = np.clip(batch + delta, 0.0, 1.0)
    probabilities = tf.nn.softmax(model(explained, training=False)).numpy()
    return Explanation(x[0], int(label), targets, ["real", "second"] + ["class"] * len(logits), explained,
                       confidence.astype(np.float32), probabilities[np.arange(len(targets)), targets], float(rho))


# ----------------------------------------------------------------------------- ARA

@dataclasses.dataclass(frozen=True)
class AraResult:
    indices: np.ndarray  # the test images used
    labels: np.ndarray
    attack: np.ndarray  # minimal RMSE that misclassifies each image (0: already wrong; inf: never found)
    btr: np.ndarray  # minimal RMSE that pushes the true-class probability to <= 1/K
    num_classes: int
    settings: dict

    @property
    def attack_ara(self) -> float:
        return area(self.attack, self.num_classes)

    @property
    def btr_ara(self) -> float:
        return area(self.btr, self.num_classes)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.attack > 0))

    def curve(self) -> pd.DataFrame:
        return curve(self.attack, self.btr)

    def per_image(self) -> pd.DataFrame:
        return pd.DataFrame({"index": self.indices, "label": self.labels, "attack_rmse": self.attack,
                             "btr_rmse": self.btr})

    def summary(self) -> dict:
        return {"images": len(self.indices), "accuracy": self.accuracy, "attack_ara": self.attack_ara,
                "btr_ara": self.btr_ara, "attack_not_found": int(np.sum(~np.isfinite(self.attack))),
                "btr_not_found": int(np.sum(~np.isfinite(self.btr))), **self.settings}


def curve(attack, btr) -> pd.DataFrame:
    """Accuracy (Attack) and better-than-random rate (BTR) against the RMSE budget r, at every jump."""
    attack, btr = np.asarray(attack, dtype=np.float64), np.asarray(btr, dtype=np.float64)
    found = np.concatenate([attack, btr])
    radii = np.unique(np.concatenate([[0.0], found[np.isfinite(found)]]))
    return pd.DataFrame({"rmse": radii, "attack_accuracy": [float(np.mean(attack > r)) for r in radii],
                         "btr_accuracy": [float(np.mean(btr > r)) for r in radii]})


def area(distances, num_classes: int) -> float:
    """ARA: the integral over r of max(0, A(r) - 1/K), A(r) = share of images whose distance exceeds r.

    A(r) is a step function, so the integral is exact; it runs up to the largest distance found
    (images never fooled count as robust over that whole range, as in the seed).
    """
    distances = np.sort(np.asarray(distances, dtype=np.float64))
    finite = distances[np.isfinite(distances)]
    if len(distances) == 0 or len(finite) == 0:
        return 0.0
    edges = np.concatenate([[0.0], np.unique(finite)])
    widths = np.diff(edges)
    above = np.array([np.mean(distances > r) for r in edges[:-1]])
    return float(np.sum(np.maximum(0.0, above - 1.0 / num_classes) * widths))


def sample_indices(count: int, available: int, seed: int = 1776) -> np.ndarray:
    """The first `count` of a seeded permutation of the test set: the same images on every machine."""
    if not 1 <= count <= available:
        raise ValueError(f"need between 1 and {available} images, got {count}")
    return np.sort(np.random.default_rng(seed).permutation(available)[:count])


def minimal_perturbations(model: keras.Model, x, labels, criterion: str, *, eps: float = 20.0, steps: int = 450,
                          momentum: float = 0.9, batch_size: int = 1000, report=None) -> np.ndarray:
    """Per image, the smallest RMSE perturbation found that fools it ("attack") or beats random ("btr")."""
    if criterion not in ("attack", "btr"):
        raise ValueError(f"criterion must be attack or btr, got {criterion!r}")
    x, labels = _checked(model, x, labels)
    _check_positive(eps=eps, steps=steps, batch_size=batch_size)
    run = _compiled(model, criterion, float(momentum))
    found = []
    for start in range(0, len(x), batch_size):
        _, best = run(x[start:start + batch_size], labels[start:start + batch_size], float(eps), 1.0, int(steps))
        found.append(best.numpy())
        if report is not None:
            report(min(start + batch_size, len(x)), len(x))
    return np.concatenate(found)


def ara(model: keras.Model, x, labels, *, indices=None, eps: float = 20.0, steps: int = 450, momentum: float = 0.9,
        batch_size: int = 1000, report=None) -> AraResult:
    """Attack and BTR ARA over the given images; `report(criterion, done, total)` after each batch."""
    x, labels = _checked(model, x, labels)
    options = dict(eps=eps, steps=steps, momentum=momentum, batch_size=batch_size)
    found = {criterion: minimal_perturbations(
        model, x, labels, criterion, **options,
        report=None if report is None else lambda done, total, c=criterion: report(c, done, total))
        for criterion in ("attack", "btr")}
    indices = np.arange(len(x)) if indices is None else np.asarray(indices)
    return AraResult(indices, labels, found["attack"], found["btr"], int(model.outputs[0].shape[-1]),
                     {"eps": eps, "steps": steps, "momentum": momentum})
