"""A model's robustness profile: the figures the Compare page sets side by side, computed once.

Clean and PGD robust accuracy over an eps grid, AutoAttack's robust accuracy at one budget, Attack
and BTR ARA, the maximal class activations,
traversals of test images to another class, and the judge's perceptual-alignment scores of both.
A profile is saved in a folder named by the model file's hash and the settings, so asking again for
the same model and settings reads it back instead of recomputing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pandas as pd

from advcore import attacks
from advcore.attacks import autoattack
from advcore.evaluation import robustness
from advcore.interpret import alignment, explain, gradient_ascent
from advcore.storage import data, files

PROFILE_FILE, ACTIVATIONS_FILE, TRAVERSALS_FILE, ARA_FILE = "profile.json", "activations.npy", "traversals.npy", "ara.csv"


@dataclasses.dataclass(frozen=True)
class ProfileSettings:
    count: int = 1000  # test images (a seeded sample) for accuracy, robustness and ARA
    eps: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2)  # Linf budgets of the robustness curve
    pgd_steps: int = 20
    autoattack_eps: float = 0.1  # Linf budget of the AutoAttack (standard) figure
    ara_steps: int = 450
    ara_eps: float = 20.0
    ara_momentum: float = 0.9
    activation_preset: str = "advlab"
    traversals: int = 20  # test images traversed to another class for the alignment score
    seed: int = 1776

    def __post_init__(self):
        if not 1 <= self.count <= 10_000:
            raise ValueError(f"count must be in 1..10000, got {self.count}")
        if not self.eps or min(self.eps) < 0:
            raise ValueError(f"eps must be a non-empty list of budgets >= 0, got {self.eps}")
        autoattack.settings_of("standard", "linf", self.autoattack_eps, 10)
        if self.activation_preset not in gradient_ascent.ACTIVATION_PRESETS:
            raise ValueError(f"activation_preset must be one of {', '.join(gradient_ascent.ACTIVATION_PRESETS)}")
        if not 1 <= self.traversals <= self.count:
            raise ValueError(f"traversals must be in 1..count, got {self.traversals}")

    @classmethod
    def from_dict(cls, values: dict) -> "ProfileSettings":
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown profile settings: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if k == "eps" else v for k, v in values.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"eps": list(self.eps)}

    def key(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def folder_for(cache_root: str | Path, model_path: str | Path, settings: ProfileSettings) -> Path:
    """Where the profile of this model file with these settings lives (whether or not it exists yet)."""
    return Path(cache_root) / f"{files.digest(model_path)[:16]}-{settings.key()}"


def _other_classes(labels, classes: int) -> np.ndarray:
    """A class other than each label, spread over all of them: image i goes to label + 1 + i mod (K - 1)."""
    labels = np.asarray(labels)
    return ((labels + 1 + np.arange(len(labels)) % (classes - 1)) % classes).astype(np.int32)


def compute(model: keras.Model, dataset: data.Dataset, settings: ProfileSettings, judge: keras.Model | None = None,
            report: Callable[[str, float], None] | None = None) -> tuple[dict, dict[str, np.ndarray], pd.DataFrame]:
    """The profile's figures, its images (activations, traversal ends) and its per-image ARA table."""
    report = report or (lambda stage, fraction: None)
    classes = int(model.outputs[0].shape[-1])
    indices = explain.sample_indices(settings.count, len(dataset.test), settings.seed)
    x, y = dataset.test.x[indices], dataset.test.y[indices]

    report("robust accuracy", 0.0)
    curve = robustness.robustness_curve(model, x, y, attacks.pgd(max(settings.eps), steps=settings.pgd_steps),
                                        settings.eps)
    report("AutoAttack", 0.1)
    members, _ = autoattack.components_of("standard")

    def member_done(member: str, _accuracy: float) -> None:  # a stop need not wait for all four members
        report(f"AutoAttack: {member} done", 0.1 + 0.1 * (members.index(member) + 1) / len(members))

    strongest = autoattack.autoattack(model, x, y, eps=settings.autoattack_eps, version="standard",
                                      report=member_done)
    report("maximal class activations", 0.2)
    ascent, start = gradient_ascent.ACTIVATION_PRESETS[settings.activation_preset]
    activations = gradient_ascent.maximal_activations(model, range(classes), ascent, start=start,
                                                      images=dataset.train.x[:5000], seed=settings.seed).images
    report("class traversals", 0.3)
    targets = _other_classes(y[:settings.traversals], classes)
    travelled = gradient_ascent.ascend(model, x[:settings.traversals], targets, gradient_ascent.TRAVERSAL.replace(
        record_every=gradient_ascent.TRAVERSAL.steps)).images
    report("ARA", 0.4)
    ara = explain.ara(model, x, y, indices=indices, eps=settings.ara_eps, steps=settings.ara_steps,
                      momentum=settings.ara_momentum,
                      report=lambda criterion, done, total: report(
                          f"{criterion} ARA", 0.4 + 0.3 * (criterion == "btr") + 0.3 * done / total))
    figures = {
        "clean_accuracy": float(curve["clean_accuracy"].iloc[0]),
        "curve": curve[["eps", "robust_accuracy"]].to_dict(orient="records"),
        "autoattack": {"eps": settings.autoattack_eps, "robust_accuracy": strongest.robust_accuracy,
                       "accuracy_after": strongest.accuracy_after},
        "ara": ara.summary(),
        "traversal_targets": targets.tolist(),
        "settings": settings.to_dict(),
    }
    if judge is not None:
        figures["alignment"] = {
            "activations": alignment.score(judge, activations, np.arange(classes)),
            "traversals": alignment.score(judge, travelled, targets),
            "test_images": alignment.score(judge, x[:settings.traversals], y[:settings.traversals]),
        }
    report("done", 1.0)
    return figures, {"activations": activations, "traversals": travelled}, ara.per_image()


def save(folder: str | Path, figures: dict, pictures: dict[str, np.ndarray], ara_table: pd.DataFrame) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, file in (("activations", ACTIVATIONS_FILE), ("traversals", TRAVERSALS_FILE)):
        with files.atomic_path(folder / file) as temporary:
            np.save(temporary, pictures[name], allow_pickle=False)
    files.write_text(folder / ARA_FILE, ara_table.to_csv(index=False))
    return files.write_json(folder / PROFILE_FILE, figures)  # last: its presence means the profile is complete


@dataclasses.dataclass(frozen=True)
class Saved:
    figures: dict
    pictures: dict[str, np.ndarray]  # "activations", "traversals"
    ara: pd.DataFrame  # the per-image minimal perturbations


def load(folder: str | Path) -> Saved | None:
    """A saved profile, or None when there is none (or not a complete one) in `folder`."""
    folder = Path(folder)
    try:
        figures = files.read_json(folder / PROFILE_FILE, "profile")
        pictures = {name: np.load(folder / file, allow_pickle=False)
                    for name, file in (("activations", ACTIVATIONS_FILE), ("traversals", TRAVERSALS_FILE))}
        ara = pd.read_csv(folder / ARA_FILE)
    except (files.FileProblem, OSError, ValueError):
        return None
    return Saved(figures, pictures, ara)
