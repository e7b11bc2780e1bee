"""Cohen et al.'s PREDICT and CERTIFY over a batch of test images, and the figures they report.

CERTIFY guesses the top class from n0 draws, counts it in n fresh draws, and certifies the L2 radius
sigma * Phi^-1(pA) where pA is the one-sided Clopper-Pearson lower bound at level alpha; it abstains
where pA < 1/2. PREDICT abstains unless a two-sided binomial test separates the top two counts at
level alpha. With probability at least 1 - alpha per image, a returned class is the smoothed
classifier's, and no perturbation inside the radius changes it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import keras
import numpy as np
import pandas as pd
from scipy import stats

from advcore.attacks.checks import check_images
from advcore.models import check_compatible
from advcore.certification import sampling

ABSTAIN = -1
GUESS, ESTIMATE, PREDICT = range(3)  # the phases of an image's draws: each has its own noise
MODES = {"quick": {"n0": 100, "n": 10_000, "alpha": 0.001}, "paper": {"n0": 100, "n": 100_000, "alpha": 0.001}}


@dataclasses.dataclass(frozen=True)
class Smoothing:
    sigma: float
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    seed: int = 0

    def __post_init__(self):  # the fields may come from a plan file: every wrong type gets its sentence too
        for name in ("sigma", "alpha"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), (int, float)):
                raise ValueError(f"{name} must be a number, got {getattr(self, name)!r}")
        for name in ("n0", "n", "seed"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise ValueError(f"{name} must be a whole number, got {getattr(self, name)!r}")
        if not (np.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0, got {self.sigma}")
        for name in ("n0", "n"):
            if not 1 <= getattr(self, name) <= 10_000_000:
                raise ValueError(f"{name} must be in 1..10000000, got {getattr(self, name)}")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def of_mode(cls, mode: str, sigma: float, **overrides) -> "Smoothing":
        """`quick` (n = 10,000) or `paper` (Cohen et al.: n0 = 100, n = 100,000, alpha = 0.001), with
        any part set by hand."""
        if not isinstance(mode, str) or mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        return cls(sigma, **MODES[mode] | {k: v for k, v in overrides.items() if v is not None})


def lower_confidence_bound(count, n: int, alpha: float) -> np.ndarray:
    """The one-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion: 0 where count is 0."""
    count = np.asarray(count)
    with np.errstate(invalid="ignore"):
        bound = stats.beta.ppf(alpha, count, n - count + 1)
    return np.where(count > 0, bound, 0.0)


def binomial_p_value(top: int, second: int) -> float:
    """The two-sided p-value that `top` of top + second draws falls in the first class when either is
    equally likely."""
    return float(stats.binomtest(top, top + second, 0.5).pvalue) if top + second else 1.0


@dataclasses.dataclass(frozen=True)
class Certificates:
    """Per image: the smoothed class (ABSTAIN where none is certified), the certified L2 radius (0
    where abstained), pA's lower bound, the top class's count in n draws, and the seconds taken."""
    prediction: np.ndarray
    radius: np.ndarray
    p_lower: np.ndarray
    count: np.ndarray
    seconds: np.ndarray

    @classmethod
    def joined(cls, parts: list["Certificates"]) -> "Certificates":
        return cls(*(np.concatenate([getattr(part, field.name) for part in parts])
                     for field in dataclasses.fields(cls)))

    def table(self, indices, labels) -> pd.DataFrame:
        """The per-image CSV's rows: each image's test-set index and label, then its certificate."""
        return pd.DataFrame({"image": np.asarray(indices), "label": np.asarray(labels),
                             "prediction": self.prediction, "radius": self.radius, "p_lower": self.p_lower,
                             "count": self.count, "seconds": self.seconds})


def _checked(model: keras.Model, x) -> np.ndarray:
    x = check_images(x)
    check_compatible(model, x.shape[1:], int(model.outputs[0].shape[-1]))
    return x


def _indices(indices, count: int) -> np.ndarray:
    """The images' indices in their test set (their noise is seeded by them): 0..count-1 by default."""
    indices = np.arange(count) if indices is None else np.asarray(indices, dtype=np.int64)
    if indices.shape != (count,) or (count and indices.min() < 0):
        raise ValueError(f"indices must be {count} test-set indices >= 0, one per image")
    return indices


def certify(model: keras.Model, x, smoothing: Smoothing, *, indices=None, batch_size: int | None = None,
            report: Callable[[int, int], None] | None = None) -> Certificates:
    """CERTIFY for each image of x, its noise seeded by its index in `indices` (default: its
    position), so a test set certified in parts gives the certificates of the whole. `report(done,
    total)` after each image."""
    x = _checked(model, x)
    batch_size = batch_size or sampling.default_batch(x.shape[1:])
    rows = []
    for offset, (image, index) in enumerate(zip(x, _indices(indices, len(x)))):
        began = time.perf_counter()
        guess = sampling.class_counts(model, image, smoothing.sigma, smoothing.n0,
                                      sampling.image_key(smoothing.seed, int(index), GUESS), batch_size=batch_size)
        top = int(np.argmax(guess))
        count = int(sampling.class_counts(model, image, smoothing.sigma, smoothing.n,
                                          sampling.image_key(smoothing.seed, int(index), ESTIMATE),
                                          batch_size=batch_size)[top])
        p_lower = float(lower_confidence_bound(count, smoothing.n, smoothing.alpha))
        certified = p_lower >= 0.5
        rows.append((top if certified else ABSTAIN, smoothing.sigma * stats.norm.ppf(p_lower) if certified else 0.0,
                     p_lower, count, time.perf_counter() - began))
        if report is not None:
            report(offset + 1, len(x))
    prediction, radius, p_lower, count, seconds = map(np.array, zip(*rows))
    return Certificates(prediction.astype(np.int64), radius.astype(np.float64), p_lower, count.astype(np.int64),
                        seconds)


def predict(model: keras.Model, x, smoothing: Smoothing, *, indices=None,
            batch_size: int | None = None) -> np.ndarray:
    """PREDICT for each image of x from n draws (seeded as `certify`'s): the smoothed class, or ABSTAIN."""
    x = _checked(model, x)
    batch_size = batch_size or sampling.default_batch(x.shape[1:])
    predictions = []
    for image, index in zip(x, _indices(indices, len(x))):
        counts = sampling.class_counts(model, image, smoothing.sigma, smoothing.n,
                                       sampling.image_key(smoothing.seed, int(index), PREDICT), batch_size=batch_size)
        second, top = np.argsort(counts, kind="stable")[-2:]
        separated = binomial_p_value(int(counts[top]), int(counts[second])) <= smoothing.alpha
        predictions.append(int(top) if separated else ABSTAIN)
    return np.array(predictions, dtype=np.int64)


def _right(certificates: Certificates, labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != certificates.prediction.shape:
        raise ValueError(f"labels must have shape {certificates.prediction.shape}, one class per image, "
                         f"got {labels.shape}")
    return certificates.prediction == labels


def certified_accuracy(certificates: Certificates, labels, radii: Sequence[float]) -> pd.DataFrame:
    """At each radius r, the share of images whose smoothed class is right with a radius of at least
    r (an abstention counts as wrong)."""
    right = _right(certificates, labels)
    return pd.DataFrame({"radius": list(radii),
                         "certified_accuracy": [float(np.mean(right & (certificates.radius >= r))) for r in radii]})


def average_certified_radius(certificates: Certificates, labels) -> float:
    """ACR: the mean certified radius, wrong and abstained images counting 0 (common, but disputed:
    it rewards a few huge radii over many moderate ones)."""
    return float(np.mean(np.where(_right(certificates, labels), certificates.radius, 0.0)))


def summary(certificates: Certificates, labels, radii: Sequence[float]) -> dict:
    """The figures a certificate run reports: the smoothed classifier's accuracy (CERTIFY's class,
    abstentions wrong), certified accuracy at each radius, the abstention rate, the ACR and the
    seconds spent."""
    return {"smoothed_accuracy": float(np.mean(_right(certificates, labels))),
            "certified_accuracy": certified_accuracy(certificates, labels, radii).to_dict(orient="records"),
            "abstention_rate": float(np.mean(certificates.prediction == ABSTAIN)),
            "acr": average_certified_radius(certificates, labels), "seconds": float(certificates.seconds.sum())}
