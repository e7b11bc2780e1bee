"""Evaluation plans: several models under several attacks over eps grids, with per-class results.

A plan is plain JSON (the Evaluate page writes one, `python -m advcore evaluate --plan` reads one).
`run_plan` measures one cell (model, attack, eps) at a time, in slices of images so it can report
progress and stop between slices; slicing does not change results (random starts depend on each
image's index). It writes `results.json` and `results.csv` after every cell, so a stopped or
crashed evaluation keeps everything it finished.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from advcore import attacks, models
from advcore.attacks import autoattack, progress
from advcore.certification import smoothing
from advcore.evaluation import robustness, tracking
from advcore.storage import data, files
from advcore.training.config import WORST_OF_LOSSES

MAX_IMAGES = 10_000


class PlanError(ValueError):
    """A plan that cannot run, with the offending field."""


@dataclasses.dataclass(frozen=True)
class ModelRef:
    label: str
    path: str
    run: str | None = None  # the run whose folder also keeps this model's results


AUTOATTACK = "autoattack"  # an attack method of plans: the AutoAttack ensemble (options: norm, version)
# a method of plans: randomized smoothing's certificate (options: sigma, mode, and n0, n, alpha by hand); its
# "eps" are L2 radii, and an image counts at a radius when the smoothed class is right and certified that far
CERTIFY = "certify"


@dataclasses.dataclass(frozen=True)
class Measured:
    robust: np.ndarray  # per image: correct clean and after the attack
    broken_by: np.ndarray | None = None  # AutoAttack: per image "clean", the breaking component, or ""


@dataclasses.dataclass(frozen=True)
class AttackRef:
    name: str
    method: str
    options: dict  # keyword arguments of `attacks.build` besides eps; for autoattack: norm and version

    @property
    def norm(self) -> str:
        if self.method == AUTOATTACK:
            return self.options.get("norm", "linf")
        if self.method == CERTIFY:
            return "l2"
        return self.specs(0.0)[0].norm

    def smoothing_of(self, seed: int) -> smoothing.Smoothing:
        """A certify attack's settings: its mode's (default quick), with any part its options set."""
        unknown = set(self.options) - {"sigma", "mode", "n0", "n", "alpha"}
        if unknown:
            raise ValueError(f"certify takes the options sigma, mode, n0, n and alpha, not {', '.join(sorted(unknown))}")
        if "sigma" not in self.options:
            raise ValueError("certify needs the option sigma, the noise's standard deviation")
        options = {k: v for k, v in self.options.items() if k not in ("sigma", "mode")}
        return smoothing.Smoothing.of_mode(self.options.get("mode", "quick"), self.options["sigma"], seed=seed,
                                           **options)

    def specs(self, eps: float) -> list[attacks.AttackSpec]:
        """The attack at `eps`; loss "ce+margin" gives one per loss, for their per-sample worst case."""
        if self.options.get("loss") == WORST_OF_LOSSES:
            return [attacks.build(self.method, eps, **(self.options | {"loss": loss})) for loss in attacks.LOSSES]
        return [attacks.build(self.method, eps, **self.options)]

    def passes(self, eps: float, classes: int) -> list[tuple[str, int]]:
        """(name, model evaluations per image) of each pass an image goes through (`evaluation.tracking`)."""
        if self.method == AUTOATTACK:
            return [(name, setting.cost) for name, setting in
                    autoattack.settings_of(self.options.get("version", "standard"), self.norm, eps, classes)]
        if self.method == CERTIFY:
            setting = self.smoothing_of(0)
            return [("noise draws", setting.n0 + setting.n)]
        return [(spec.loss, spec.cost) for spec in self.specs(eps)]

    def check(self, eps: float, classes: int) -> None:
        """Builds the attack at `eps`: a ValueError says what is wrong with it."""
        if self.method == AUTOATTACK:
            unknown = set(self.options) - {"norm", "version"}
            if unknown:
                raise ValueError(f"autoattack takes the options norm and version, not {', '.join(sorted(unknown))}")
            autoattack.settings_of(self.options.get("version", "standard"), self.norm, eps, classes)
        elif self.method == CERTIFY:
            self.smoothing_of(0)
        else:
            self.specs(eps)

    def measure(self, model, x, y, eps: float, *, batch_size: int, seed: int, first_index: int,
                certified: dict) -> Measured:
        """The cell's per-image outcome on x (test images from `first_index`). A certify attack
        certifies each slice once, keeping the certificates in `certified` for its other radii."""
        if self.method == CERTIFY:
            if (self.name, first_index) not in certified:
                certified[self.name, first_index] = smoothing.certify(
                    model, x, self.smoothing_of(seed), indices=first_index + np.arange(len(x)))
            found = certified[self.name, first_index]
            return Measured((found.prediction == y) & (found.radius >= eps))
        if self.method == AUTOATTACK:
            result = autoattack.autoattack(model, x, y, eps=eps, norm=self.norm,
                                           version=self.options.get("version", "standard"), batch_size=batch_size,
                                           seed=seed, first_index=first_index)
            return Measured(result.robust, result.broken_by)
        outcome = robustness.worst_case_accuracy(model, x, y, self.specs(eps), batch_size=batch_size, seed=seed,
                                                 first_index=first_index)
        return Measured(outcome.robust)


@dataclasses.dataclass(frozen=True)
class Plan:
    models: tuple[ModelRef, ...]
    attacks: tuple[AttackRef, ...]
    eps: dict  # norm -> list of budgets
    dataset: str = "fashion_mnist"
    count: int = 1000
    seed: int = 0
    batch_size: int = 500
    sanity: bool = False

    @classmethod
    def from_dict(cls, content: dict) -> "Plan":
        """A checked plan: every attack is built at every eps of its norm before any work."""
        try:
            plan = cls(models=tuple(ModelRef(**m) for m in content["models"]),
                       attacks=tuple(AttackRef(**a) for a in content["attacks"]),
                       eps={norm: [float(e) for e in values] for norm, values in content["eps"].items()},
                       **{k: content[k] for k in ("dataset", "count", "seed", "batch_size", "sanity") if k in content})
        except KeyError as missing:
            raise PlanError(f"the plan has no {missing.args[0]!r}") from None
        except (TypeError, AttributeError, ValueError) as error:
            raise PlanError(f"the plan is malformed: {error}") from None
        plan.check()
        return plan

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"models": [dataclasses.asdict(m) for m in self.models],
                                           "attacks": [dataclasses.asdict(a) for a in self.attacks]}

    def check(self) -> None:
        _require(self.models, "models: choose at least one model")
        _require(self.attacks, "attacks: choose at least one attack")
        _require(len({a.name for a in self.attacks}) == len(self.attacks), "attacks: two attacks have one name")
        _require(isinstance(self.count, int) and 1 <= self.count <= MAX_IMAGES,
                 f"count: evaluate 1..{MAX_IMAGES} images, got {self.count!r}")
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size: must be >= 1")
        classes = len(data.CLASS_NAMES.get(self.dataset, range(10)))  # a folder's classes are counted later
        for attack in self.attacks:
            try:
                norm = attack.norm
                grid = self.eps.get(norm) or []
                _require(grid, f"eps.{norm}: attack {attack.name!r} needs at least one {norm} eps")
                for eps in grid:
                    _require(math.isfinite(eps) and eps >= 0, f"eps.{norm}: {eps!r} is not a budget >= 0")
                    attack.check(eps, classes)
            except ValueError as error:
                raise PlanError(f"attack {attack.name!r}: {error}") from None

    def cells(self) -> list[tuple[ModelRef, AttackRef, float]]:
        return [(m, a, eps) for m in self.models for a in self.attacks for eps in sorted(self.eps[a.norm])]


def _require(condition, message: str) -> None:
    if not condition:
        raise PlanError(message)


def slice_size(batch_size: int) -> int:
    """Images per slice: enough to keep the early-stopping pool full, few enough to report often."""
    return max(4 * batch_size, 1000)


CERTIFIED_SLICE = 50  # images per slice of a certificate (each takes n0 + n draws): a stop waits for no more

IMAGES_FILE = "per_image.csv"  # one row per (cell, test image): what `shards` merges, and what a researcher filters


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One cell over a range of test images: per image, correct clean, robust, and (AutoAttack) the
    component that broke it ("clean" when the clean prediction was wrong, "" when none did)."""

    clean: np.ndarray
    robust: np.ndarray
    broken_by: np.ndarray | None
    seconds: float

    @classmethod
    def joined(cls, parts: list["Outcome"]) -> "Outcome":
        """Consecutive ranges as one; their seconds are summed (the work, not the wall time)."""
        broken = None if parts[0].broken_by is None else np.concatenate([p.broken_by for p in parts])
        return cls(np.concatenate([p.clean for p in parts]), np.concatenate([p.robust for p in parts]), broken,
                   sum(p.seconds for p in parts))


@dataclasses.dataclass
class Results:
    """Everything measured so far; `frame()` is one row per cell with per-class columns."""

    plan: Plan
    class_names: list[str]
    rows: list[dict] = dataclasses.field(default_factory=list)
    flags: list[dict] = dataclasses.field(default_factory=list)
    sanity: dict = dataclasses.field(default_factory=dict)
    unsaved_images: list[pd.DataFrame] = dataclasses.field(default_factory=list, repr=False)
    images_begun: bool = False

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def to_dict(self) -> dict:
        return {"plan": self.plan.to_dict(), "class_names": self.class_names, "cells": self.rows,
                "flags": self.flags, "sanity": self.sanity}

    def record(self, model_ref: ModelRef, attack_ref: AttackRef, eps: float, outcome: Outcome, labels: np.ndarray) -> None:
        """A measured cell: its row, its per-image results, and its flags (the curve's at its last eps)."""
        self.rows.append({"model": model_ref.label, "attack": attack_ref.name, "norm": attack_ref.norm, "eps": eps,
                          "clean_accuracy": float(outcome.clean.mean()), "robust_accuracy": float(outcome.robust.mean()),
                          "count": len(labels), "seconds": outcome.seconds,
                          **{f"class {name}": value
                             for name, value in per_class(outcome.robust, labels, self.class_names).items()}})
        self.unsaved_images.append(pd.DataFrame({
            "model": model_ref.label, "attack": attack_ref.name, "eps": eps, "image": np.arange(len(labels)),
            "label": labels, "clean": outcome.clean, "robust": outcome.robust,
            "broken_by": "" if outcome.broken_by is None else outcome.broken_by}))
        if attack_ref.method == AUTOATTACK:
            _autoattack_breakdown(self, model_ref, attack_ref, outcome.broken_by)
        if eps == max(self.plan.eps[attack_ref.norm]):
            _finish_curve(self, model_ref, attack_ref)

    def record_checks(self, model_label: str, flags: list, figures: dict) -> None:
        """A model's gradient-masking checks (`robustness.sanity_checks`)."""
        self.sanity[model_label] = figures
        self.flags += [{"model": model_label, "attack": "sanity checks", **dataclasses.asdict(flag)} for flag in flags]

    def save(self, folder: Path) -> None:
        """results.json and results.csv anew; the per-image rows of cells measured since the last save
        appended to per_image.csv (begun anew by the first save)."""
        files.write_json(folder / "results.json", self.to_dict())
        with files.atomic_path(folder / "results.csv") as tmp:
            self.frame().to_csv(tmp, index=False)
        if not self.images_begun:
            with files.atomic_path(folder / IMAGES_FILE) as tmp:
                pd.DataFrame(columns=["model", "attack", "eps", "image", "label", "clean", "robust",
                                      "broken_by"]).to_csv(tmp, index=False)
            self.images_begun = True
        with files.open_append(folder / IMAGES_FILE) as handle:
            for frame in self.unsaved_images:
                frame.to_csv(handle, index=False, header=False)
        self.unsaved_images.clear()


def per_class(correct: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    return {name: float(correct[labels == c].mean()) if (labels == c).any() else None
            for c, name in enumerate(class_names)}


class Stopped(Exception):
    """Asked to stop, between two slices of images."""


@dataclasses.dataclass(frozen=True)
class TestImages:
    """Test images from index `first` on, their labels, and the dataset's class names."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    first: int = 0

    def part(self, first: int, last: int) -> "TestImages":
        return TestImages(self.x[first:last], self.y[first:last], self.class_names, self.first + first)


def test_images(plan: Plan, load_model: Callable[[str], object],
                load_dataset: Callable[[str], data.Dataset]) -> TestImages:
    """The plan's test images (its first `count`), read at its first model's input size."""
    first_model = load_model(plan.cells()[0][0].path)
    dataset = load_dataset(plan.dataset, image_size=models.input_size(first_model), splits=("test",))
    return TestImages(dataset.test.x[:plan.count], dataset.test.y[:plan.count], list(dataset.class_names))


def run_plan(plan: Plan, out: Path, *, should_stop: Callable[[], bool] = lambda: False,
             report: Callable[[dict], None] = lambda progress: None,
             load_model: Callable[[str], object] = models.load,
             load_dataset: Callable[[str], data.Dataset] = data.load) -> tuple[str, Results]:
    """Runs the plan, saving results into `out` after every cell; returns ("finished" | "stopped", results).

    A long-lived caller passes caching loaders, so repeated plans skip reading models and data.
    """
    images = test_images(plan, load_model, load_dataset)
    results = Results(plan, images.class_names)
    work = plan_work(plan, len(images.y), len(images.class_names))
    try:
        for key, measured in measure(plan, images, work, tracking.Tracker(list(work.values()), report),
                                     load_model=load_model, should_stop=should_stop):
            if key[-1] == SANITY:
                results.record_checks(key[0], *measured)
            else:
                results.record(*key, measured, images.y)
            results.save(out)  # a cell's results are shown while its model's checks run
    except Stopped:
        return "stopped", results
    return "finished", results


def measure(plan: Plan, images: TestImages, work: dict, tracker: tracking.Tracker, *,
            load_model: Callable[[str], object], should_stop: Callable[[], bool]) -> Iterator[tuple[tuple, object]]:
    """Measures the plan on `images`, cell by cell in slices of images, model by model. Yields
    ((model, attack, eps), Outcome) per cell, and ((model label, SANITY), (flags, figures)) after a
    model's last cell where `work` holds its checks. Raises Stopped when asked to, between slices."""
    x, y, current = images.x, images.y, None
    for model_ref, attack_ref, eps in plan.cells():
        if model_ref != current:
            current, model, certified = model_ref, load_model(model_ref.path), {}
            models.check_compatible(model, x.shape[1:], len(images.class_names))
            clean = robustness.predict_logits(model, x, plan.batch_size).argmax(-1) == y
        begun, measured = time.perf_counter(), []
        with tracker.doing(work[model_ref.label, attack_ref.name, eps]):
            step = CERTIFIED_SLICE if attack_ref.method == CERTIFY else slice_size(plan.batch_size)
            for (first, last), share in _slices(len(x), step):
                if should_stop():
                    raise Stopped
                with share:
                    measured.append(attack_ref.measure(model, x[first:last], y[first:last], eps,
                                                       batch_size=plan.batch_size, seed=plan.seed,
                                                       first_index=images.first + first, certified=certified))
        robust = np.concatenate([m.robust for m in measured])
        broken_by = np.concatenate([m.broken_by for m in measured]) if attack_ref.method == AUTOATTACK else None
        yield (model_ref, attack_ref, eps), Outcome(clean, robust, broken_by, time.perf_counter() - begun)
        if (model_ref.label, SANITY) in work and (attack_ref, eps) == checked_after(plan):
            with tracker.doing(work[model_ref.label, SANITY]):
                yield (model_ref.label, SANITY), run_checks(plan, model, x, y)


SANITY = "sanity checks"  # the work key of a model's gradient-masking checks


def checked_after(plan: Plan) -> tuple[AttackRef, float] | None:
    """The cell (attack, eps) after which each model's gradient-masking checks run, at that eps and
    norm: the last attack (not a certificate) at its largest eps; None when the plan has no checks
    (or that eps is 0)."""
    attacked = [attack for attack in plan.attacks if attack.method != CERTIFY]  # the checks are attacks' checks
    if not plan.sanity or not attacked:
        return None
    largest = max(plan.eps[attacked[-1].norm])
    return (attacked[-1], largest) if largest > 0 else None


def run_checks(plan: Plan, model, x, y) -> tuple[list, dict]:
    """A model's gradient-masking checks over images `x`, at the cell `checked_after` names."""
    attack_ref, eps = checked_after(plan)
    return robustness.sanity_checks(model, x, y, norm=attack_ref.norm, eps=eps, batch_size=plan.batch_size,
                                    seed=plan.seed)


def plan_work(plan: Plan, count: int, classes: int, checks: bool = True) -> dict:
    """The plan's work in order, known before the first image: (model label, attack name, eps) per
    cell and, with `checks`, (model label, SANITY) per model checked -> `tracking.Work`."""
    work = {}
    for model_ref, attack_ref, eps in plan.cells():
        passes = attack_ref.passes(eps, classes)
        if attack_ref.method == CERTIFY and eps != min(plan.eps[attack_ref.norm]):
            passes = [(name, 0) for name, _ in passes]  # certified at its first radius, read at the others
        label = f"{model_ref.label} / {attack_ref.name} / eps {eps:g}"
        work[model_ref.label, attack_ref.name, eps] = tracking.Work(label, count * len(passes),
                                                                    count * sum(cost for _, cost in passes))
        if checks and (attack_ref, eps) == checked_after(plan):
            passes, costs = robustness.sanity_cost()
            work[model_ref.label, SANITY] = tracking.Work(f"{model_ref.label} / gradient-masking checks",
                                                          count * sum(passes), count * sum(costs))
    return work


def _slices(count: int, step: int) -> list:
    """((first, last), its `attacks.progress.part`) of each slice of images."""
    bounds = [(first, min(first + step, count)) for first in range(0, count, step)]
    return list(zip(bounds, progress.parts([last - first for first, last in bounds], [None] * len(bounds),
                                           [last - first for first, last in bounds])))


def _autoattack_breakdown(results: Results, model_ref: ModelRef, attack_ref: AttackRef, broken_by: np.ndarray) -> None:
    """The accuracy left after each AutoAttack component (columns "after <component>") and its flags."""
    row = results.rows[-1]
    components = autoattack.components_of(attack_ref.options.get("version", "standard"))[0]
    row |= {robustness.AFTER + name: value for name, value in autoattack.accuracy_after(broken_by, components).items()
            if name != autoattack.CLEAN}
    for flag in robustness.autoattack_flags(row, tolerance=max(0.005, 1.5 / len(broken_by))):
        results.flags.append({"model": model_ref.label, "attack": attack_ref.name, "eps": row["eps"],
                              **dataclasses.asdict(flag)})


def _finish_curve(results: Results, model_ref: ModelRef, attack_ref: AttackRef) -> None:
    frame = results.frame()
    curve = frame[(frame["model"] == model_ref.label) & (frame["attack"] == attack_ref.name)]
    for flag in robustness.check_curve(curve, tolerance=max(0.005, 1.5 / curve["count"].iloc[0])):
        results.flags.append({"model": model_ref.label, "attack": attack_ref.name, **dataclasses.asdict(flag)})
