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
from advcore.evaluation import robustness, shards
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
    # ARA descends on blocks of this many sampled images, and a cluster's shards are cut between blocks:
    # TensorFlow's kernels round differently for different batch sizes, so only equal batches give the
    # same distances to the bit
    ara_batch: int = 250
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
        if not 1 <= self.ara_batch <= 10_000:
            raise ValueError(f"ara_batch must be in 1..10000, got {self.ara_batch}")
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


PICTURES_SHARE = 0.2  # of a profile's work: the class activations and traversals; the rest is per image


@dataclasses.dataclass(frozen=True)
class Sample:
    """The profile's test images: a seeded sample of the test set, the same on every machine."""
    indices: np.ndarray
    x: np.ndarray
    y: np.ndarray


def sample(dataset: data.Dataset, settings: ProfileSettings) -> Sample:
    indices = explain.sample_indices(settings.count, len(dataset.test), settings.seed)
    return Sample(indices, dataset.test.x[indices], dataset.test.y[indices])


def ranges(settings: ProfileSettings, count: int) -> list[tuple[int, int]]:
    """`count` consecutive ranges of the sample (fewer where it has fewer ARA blocks), cut between
    ARA blocks: a cluster's shards."""
    block = settings.ara_batch
    return [(first * block, min(last * block, settings.count))
            for first, last in shards.bounds(-(-settings.count // block), count)]


@dataclasses.dataclass(frozen=True)
class Measured:
    """Per image of consecutive sampled test images: correct clean, robust at each budget of the
    sorted eps grid (one row per budget), AutoAttack's breaking component, and the ARA distances."""
    clean: np.ndarray
    robust: np.ndarray
    broken_by: np.ndarray
    attack: np.ndarray
    btr: np.ndarray

    @classmethod
    def joined(cls, parts: list["Measured"]) -> "Measured":
        """Consecutive ranges, in order, as one."""
        return cls(*(np.concatenate([getattr(part, field.name) for part in parts], axis=-1)
                     for field in dataclasses.fields(cls)))


def measure_images(model: keras.Model, x, y, settings: ProfileSettings, *, first_index: int = 0,
                   report: Callable[[str, float], None]) -> Measured:
    """The per-image figures of sampled images x, from position `first_index` of the sample. Random
    starts are seeded by position, so a range of `ranges` measured alone gives what it gives within
    the whole."""
    grid = sorted(float(eps) for eps in settings.eps)
    pgd = attacks.pgd(max(grid), steps=settings.pgd_steps)
    report("robust accuracy", 0.0)
    curve = [robustness.robust_accuracy(model, x, y, pgd.replace(eps=eps), first_index=first_index) for eps in grid]
    report("AutoAttack", 1 / 8)
    members, _ = autoattack.components_of("standard")

    def member_done(member: str, _accuracy: float) -> None:  # a stop need not wait for all four members
        report(f"AutoAttack: {member} done", (1 + (members.index(member) + 1) / len(members)) / 8)

    strongest = autoattack.autoattack(model, x, y, eps=settings.autoattack_eps, version="standard",
                                      report=member_done, first_index=first_index)
    report("ARA", 2 / 8)
    options = dict(eps=settings.ara_eps, steps=settings.ara_steps, momentum=settings.ara_momentum,
                   batch_size=settings.ara_batch)
    distances = {criterion: explain.minimal_perturbations(
        model, x, y, criterion, **options,
        report=lambda done, total, c=criterion: report(f"{c} ARA", (2 + 3 * (c == "btr") + 3 * done / total) / 8))
        for criterion in ("attack", "btr")}
    return Measured(curve[0].result.clean_predictions == np.asarray(y), np.stack([o.robust for o in curve]),
                    strongest.broken_by, distances["attack"], distances["btr"])


@dataclasses.dataclass(frozen=True)
class Pictures:
    """The maximal class activations, the traversal ends and their targets, and (with a judge) the
    perceptual-alignment scores."""
    activations: np.ndarray
    traversals: np.ndarray
    targets: np.ndarray
    alignment: dict | None


def draw_pictures(model: keras.Model, dataset: data.Dataset, settings: ProfileSettings, judge: keras.Model | None,
                  report: Callable[[str, float], None]) -> Pictures:
    classes = int(model.outputs[0].shape[-1])
    images = sample(dataset, settings)
    x, y = images.x[:settings.traversals], images.y[:settings.traversals]
    report("maximal class activations", 0.0)
    ascent, start = gradient_ascent.ACTIVATION_PRESETS[settings.activation_preset]
    activations = gradient_ascent.maximal_activations(model, range(classes), ascent, start=start,
                                                      images=dataset.train.x[:5000], seed=settings.seed).images
    report("class traversals", 0.5)
    targets = _other_classes(y, classes)
    travelled = gradient_ascent.ascend(model, x, targets, gradient_ascent.TRAVERSAL.replace(
        record_every=gradient_ascent.TRAVERSAL.steps)).images
    scores = None if judge is None else {
        "activations": alignment.score(judge, activations, np.arange(classes)),
        "traversals": alignment.score(judge, travelled, targets),
        "test_images": alignment.score(judge, x, y),
    }
    return Pictures(activations, travelled, targets, scores)


def assemble(settings: ProfileSettings, images: Sample, classes: int, measured: Measured,
             pictures: Pictures) -> tuple[dict, dict[str, np.ndarray], pd.DataFrame]:
    """The profile's figures, its images (activations, traversal ends) and its per-image ARA table."""
    grid = sorted(float(eps) for eps in settings.eps)
    ara = explain.AraResult(images.indices, images.y, measured.attack, measured.btr, classes,
                            {"eps": settings.ara_eps, "steps": settings.ara_steps, "momentum": settings.ara_momentum})
    members, _ = autoattack.components_of("standard")
    figures = {
        "clean_accuracy": float(measured.clean.mean()),
        "curve": [{"eps": eps, "robust_accuracy": float(robust.mean())} for eps, robust in zip(grid, measured.robust)],
        "autoattack": {"eps": settings.autoattack_eps, "robust_accuracy": float(np.mean(measured.broken_by == "")),
                       "accuracy_after": autoattack.accuracy_after(measured.broken_by, members)},
        "ara": ara.summary(),
        "traversal_targets": pictures.targets.tolist(),
        "settings": settings.to_dict(),
    }
    if pictures.alignment is not None:
        figures["alignment"] = pictures.alignment
    return figures, {"activations": pictures.activations, "traversals": pictures.traversals}, ara.per_image()


def compute(model: keras.Model, dataset: data.Dataset, settings: ProfileSettings, judge: keras.Model | None = None,
            report: Callable[[str, float], None] | None = None) -> tuple[dict, dict[str, np.ndarray], pd.DataFrame]:
    """The whole profile in this process (`advcore.jobs.ray_evaluation.profile_sharded` splits it
    by image over a cluster, to the same figures)."""
    report = report or (lambda stage, fraction: None)
    images = sample(dataset, settings)
    measured = measure_images(model, images.x, images.y, settings,
                              report=lambda stage, fraction: report(stage, (1 - PICTURES_SHARE) * fraction))
    pictures = draw_pictures(model, dataset, settings, judge, report=lambda stage, fraction: report(
        stage, 1 - PICTURES_SHARE * (1 - fraction)))
    report("done", 1.0)
    return assemble(settings, images, int(model.outputs[0].shape[-1]), measured, pictures)


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
