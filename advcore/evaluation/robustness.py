"""Clean and robust accuracy, robustness curves, attack matrices and gradient-masking checks.

Robust accuracy counts a sample as robust when it is classified correctly both clean and after the
attack. Evaluations run the attacks with early stopping: a fooled sample is never attacked again,
which cannot raise the reported accuracy (the fooling point is kept) and saves most of the work on
weak models.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Mapping, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from advcore import attacks, models
from advcore.attacks import AttackSpec, autoattack, progress
from advcore.attacks.norms import NORMS
from advcore.attacks.remaining import clean_logits


def predict_logits(model: keras.Model, x, batch_size: int = 500) -> np.ndarray:
    """Inference-mode logits, batched through one compiled forward pass per model."""
    return clean_logits(model, attacks.check_images(x), batch_size)


def accuracy(model: keras.Model, x, y, batch_size: int = 500) -> float:
    logits = predict_logits(model, x, batch_size)
    y = attacks.check_labels(y, len(logits), logits.shape[-1])
    return float(np.mean(np.argmax(logits, -1) == y))


@dataclasses.dataclass(frozen=True)
class RobustAccuracy:
    clean_accuracy: float
    robust_accuracy: float
    robust: np.ndarray  # per sample: correct clean and after the attack
    result: attacks.AttackResult
    seconds: float

    @property
    def count(self) -> int:
        return len(self.robust)


def robust_accuracy(model: keras.Model, x, y, spec: AttackSpec, *, target=None, batch_size: int = 500,
                    seed: int = 0, early_stop: bool = True, first_index: int = 0) -> RobustAccuracy:
    """Accuracy under `spec`; `early_stop=False` attacks every sample for every step.

    `first_index` is the index of x[0] in a longer array (see `attacks.attack`).
    """
    start = time.perf_counter()
    result = attacks.attack(model, x, y, spec.replace(early_stop=early_stop), target=target,
                            batch_size=batch_size, seed=seed, first_index=first_index)
    y = np.asarray(y)
    clean = result.clean_predictions == y
    robust = clean & (result.predictions == y)
    return RobustAccuracy(float(clean.mean()), float(robust.mean()), robust, result,
                          time.perf_counter() - start)


@dataclasses.dataclass(frozen=True)
class WorstCase:
    """Accuracy when every sample faces each of several attacks and counts as robust only if none
    fools it; `outcomes` keeps each attack's own figures."""
    clean_accuracy: float
    robust_accuracy: float
    robust: np.ndarray
    outcomes: tuple[RobustAccuracy, ...]
    seconds: float


def worst_case_accuracy(model: keras.Model, x, y, specs: Sequence[AttackSpec], *, batch_size: int = 500,
                        seed: int = 0, first_index: int = 0) -> WorstCase:
    """The per-sample worst case over `specs` (e.g. PGD on cross-entropy and on the margin).

    Every attack sees every sample, so the result does not depend on how the images are sliced; with
    early stopping a sample an earlier attack fooled costs a later one little.
    """
    if not specs:
        raise ValueError("worst_case_accuracy needs at least one attack")
    stages = [f"{spec.loss} loss" if len(specs) > 1 else None for spec in specs]
    outcomes = []
    for spec, share in zip(specs, progress.parts([spec.cost for spec in specs], stages)):
        with share:
            outcomes.append(robust_accuracy(model, x, y, spec, batch_size=batch_size, seed=seed,
                                            first_index=first_index))
    robust = np.logical_and.reduce([outcome.robust for outcome in outcomes])
    return WorstCase(outcomes[0].clean_accuracy, float(robust.mean()), robust, tuple(outcomes),
                     sum(outcome.seconds for outcome in outcomes))


def strongest(eps: float, norm: str = "linf", steps: int = 50, restarts: int = 10) -> list[AttackSpec]:
    """The strongest evaluation advcore runs: PGD-50 with 10 random restarts, on cross-entropy and on
    the logit margin, taken per sample at its worst (`worst_case_accuracy`)."""
    return [attacks.pgd(eps, norm=norm, steps=steps, restarts=restarts, loss=loss) for loss in attacks.LOSSES]


def robustness_curve(model: keras.Model, x, y, spec: AttackSpec | Sequence[AttackSpec], eps_values: Sequence[float],
                     *, batch_size: int = 500, seed: int = 0) -> pd.DataFrame:
    """Robust accuracy at each eps, each attacked independently (so masking shows as non-monotone).

    Several specs give the per-sample worst case of them at each eps. A spec whose step size is
    left to its default scales it with each eps.
    """
    if len(eps_values) == 0:
        raise ValueError("eps_values is empty: give at least one eps")
    specs = [spec] if isinstance(spec, AttackSpec) else list(spec)
    rows, grid = [], sorted(float(e) for e in eps_values)
    for eps, share in zip(grid, progress.parts([1.0] * len(grid), [None] * len(grid))):
        with share:
            outcome = worst_case_accuracy(model, x, y, [s.replace(eps=eps) for s in specs], batch_size=batch_size,
                                          seed=seed)
        rows.append({"eps": eps, "robust_accuracy": outcome.robust_accuracy,
                     "clean_accuracy": outcome.clean_accuracy, "seconds": outcome.seconds})
    return pd.DataFrame(rows)


def autoattack_curve(model: keras.Model, x, y, eps_values: Sequence[float], *, norm: str = "linf",
                     version: str | Sequence[str] = "standard", batch_size: int = 500, seed: int = 0) -> pd.DataFrame:
    """AutoAttack's robust accuracy at each eps, with the accuracy left after each component."""
    if len(eps_values) == 0:
        raise ValueError("eps_values is empty: give at least one eps")
    classes = int(model.outputs[0].shape[-1])
    for eps in eps_values:
        autoattack.settings_of(version, norm, float(eps), classes)  # every budget checked before any work
    rows = []
    for eps in sorted(float(e) for e in eps_values):
        start = time.perf_counter()
        result = autoattack.autoattack(model, x, y, eps=eps, norm=norm, version=version, batch_size=batch_size,
                                       seed=seed)
        rows.append({"eps": eps, "robust_accuracy": result.robust_accuracy, "clean_accuracy": result.clean_accuracy,
                     "seconds": time.perf_counter() - start,
                     **{AFTER + name: value for name, value in result.accuracy_after.items()
                        if name != autoattack.CLEAN}})
    return pd.DataFrame(rows)


AFTER = "after "  # prefix of the columns of robust accuracy left after each AutoAttack component


def accuracy_after(row: Mapping) -> dict:
    """The AutoAttack components of a result row, in order, with the accuracy left after each (none
    for another attack's row, whose columns of a mixed table are empty)."""
    return {name[len(AFTER):]: value for name, value in row.items() if name.startswith(AFTER) and value == value}


def attack_matrix(classifiers: Mapping[str, keras.Model], specs: Mapping[str, AttackSpec], x, y, *,
                  batch_size: int = 500, seed: int = 0) -> pd.DataFrame:
    """Robust accuracy of each model (rows, e.g. by training method) under each attack (columns)."""
    table = {}
    for model_name, model in classifiers.items():
        row = {"clean": accuracy(model, x, y, batch_size)}
        for attack_name, spec in specs.items():
            row[attack_name] = robust_accuracy(model, x, y, spec, batch_size=batch_size,
                                               seed=seed).robust_accuracy
        table[model_name] = row
    frame = pd.DataFrame.from_dict(table, orient="index")
    frame.index.name = "model"
    return frame


# ----------------------------------------------------------------------------- gradient masking

@dataclasses.dataclass(frozen=True)
class SanityFlag:
    code: str
    message: str


def zero_gradient_fraction(model: keras.Model, x, y, batch_size: int = 500) -> float:
    """Share of samples whose cross-entropy input gradient is exactly zero everywhere."""
    x = attacks.check_images(x)
    y = attacks.check_labels(y, len(x), int(model.outputs[0].shape[-1]))
    spec = attacks.fgsm(0.0)
    zero = []
    for i in range(0, len(x), batch_size):
        grad, _, _ = attacks.input_gradient(model, spec, tf.constant(x[i:i + batch_size]),
                                            tf.constant(y[i:i + batch_size]))
        zero.append(np.all(grad.numpy().reshape(len(grad), -1) == 0, axis=1))
    return float(np.concatenate(zero).mean())


def check_curve(curve: pd.DataFrame, tolerance: float) -> list[SanityFlag]:
    """Flags a robust accuracy that rises with eps."""
    accuracy_values = curve.sort_values("eps")["robust_accuracy"].to_numpy()
    rises = np.diff(accuracy_values)
    if len(rises) and rises.max() > tolerance:
        return [SanityFlag("accuracy_rises_with_eps",
                           f"robust accuracy rises by {rises.max():.1%} as eps grows; a larger ball "
                           "contains the smaller one, so the attack is failing (gradient masking?)")]
    return []


def check_figures(figures: dict, tolerance: float) -> list[SanityFlag]:
    """The gradient-masking flags that the measured figures of `sanity_checks` raise."""
    flags = []
    if figures["outputs_probabilities"]:
        flags.append(SanityFlag("softmax_output",
                                "the model outputs probabilities, not logits: saturated softmax "
                                "gradients weaken attacks; attack the pre-softmax logits"))
    if figures["zero_gradient_fraction"] > 0.01:
        flags.append(SanityFlag("zero_gradients",
                                f"{figures['zero_gradient_fraction']:.1%} of samples have an all-zero input "
                                "gradient: gradient attacks cannot move them, so robust accuracy is "
                                "overestimated"))
    single, multi = figures["single_step_accuracy"], figures["pgd_accuracy"]
    if multi > single + tolerance:
        flags.append(SanityFlag("pgd_weaker_than_fgsm",
                                f"PGD leaves {multi:.1%} accuracy but one gradient step leaves {single:.1%}: "
                                "the iterative attack is being misled (gradient masking?)"))
    flags += check_curve(pd.DataFrame(figures["curve"]), tolerance)
    if figures["unbounded_accuracy"] > 0.1:
        flags.append(SanityFlag("large_eps_not_zero",
                                f"with eps = {figures['unbounded_eps']:g} (any image is reachable) "
                                f"{figures['unbounded_accuracy']:.1%} of samples stay correct; the attack "
                                "should reach ~0%, so gradients are unreliable here"))
    return flags


def autoattack_flags(row: Mapping, tolerance: float) -> list[SanityFlag]:
    """The gradient-masking flags of one AutoAttack result row (its "after <component>" columns)."""
    flags = []
    after = accuracy_after(row)
    names = list(after)
    if "square" in names[1:]:
        broken = after[names[names.index("square") - 1]] - after["square"]
        if broken > tolerance:
            flags.append(SanityFlag("square_beats_gradients",
                                    f"the gradient-free Square Attack broke {broken:.1%} of the images every "
                                    "gradient attack left robust: gradients mislead the gradient attacks here "
                                    "(gradient masking)"))
    if "apgd-ce" in names and names[-1] != "apgd-ce":
        gap = after["apgd-ce"] - after[names[-1]]
        if gap > 0.05:
            flags.append(SanityFlag("apgd_ce_far_from_ensemble",
                                    f"the full ensemble is {gap:.1%} below APGD-CE alone: cross-entropy "
                                    "attacks (PGD too) overestimate this model's robustness"))
    return flags


SANITY_STAGES = ("zero gradients", "single step", "PGD at eps/4, eps/2, eps", "unbounded PGD")


def sanity_cost(steps: int = 20) -> tuple[list[int], list[int]]:
    """Per stage of `sanity_checks`: its passes and its model evaluations per image (`attacks.progress`)."""
    return [1, 1, 3, 1], [progress.GRADIENT * n for n in (1, 1, 3 * steps, steps)]


def sanity_checks(model: keras.Model, x, y, *, norm: str = "linf", eps: float = 0.1, steps: int = 20,
                  batch_size: int = 500, seed: int = 0) -> tuple[list[SanityFlag], dict]:
    """Runs the standard gradient-masking checks; returns the flags and the figures behind them."""
    def accuracy_under(spec):
        return robust_accuracy(model, x, y, spec, batch_size=batch_size, seed=seed).robust_accuracy

    passes, costs = sanity_cost(steps)
    zero, single, curve_part, unbounded = progress.parts(costs, [f"check: {s}" for s in SANITY_STAGES], passes)
    whole_box = 1.0 if norm == "linf" else float(np.sqrt(np.prod(np.shape(x)[1:])))
    figures = {"outputs_probabilities": models.outputs_probabilities(model), "unbounded_eps": whole_box}
    with zero:
        figures["zero_gradient_fraction"] = zero_gradient_fraction(model, x, y, batch_size)
    with single:
        figures["single_step_accuracy"] = accuracy_under(attacks.fgm(eps, scaling=NORMS[norm].steepest_scaling))
    with curve_part:
        curve = robustness_curve(model, x, y, attacks.pgd(eps, norm=norm, steps=steps), [eps / 4, eps / 2, eps],
                                 batch_size=batch_size, seed=seed)
    figures |= {"pgd_accuracy": float(curve["robust_accuracy"].iloc[-1]), "curve": curve.to_dict(orient="records")}
    with unbounded:
        figures["unbounded_accuracy"] = accuracy_under(attacks.pgd(whole_box, norm=norm, steps=steps))
    return check_figures(figures, tolerance=max(0.005, 1.5 / max(len(x), 1))), figures
