"""AutoAttack (Croce & Hein, ICML 2020): a fixed ensemble of parameter-free attacks.

Each component runs only on the images every earlier one left robust, so an image counts as robust
only if it survives them all, and the ensemble costs little more than its first member on a weak
model. The result says, per image, which component broke it (and keeps that example), and the
robust accuracy after each component.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import keras
import numpy as np

from advcore.attacks import progress
from advcore.attacks.apgd import Apgd, apgd
from advcore.attacks.checks import checked_batch
from advcore.attacks.fab import FabT, fab_t
from advcore.attacks.remaining import clean_logits
from advcore.attacks.spec import require
from advcore.attacks.square import Square, square

# component name -> its settings for (norm, eps, gradient draws per step, the model's class count);
# the targeted ones aim at up to 9 classes, the 2nd to 10th most likely
COMPONENTS: dict[str, Callable[[str, float, int, int], Apgd | FabT | Square]] = {
    "apgd-ce": lambda norm, eps, eot, classes: Apgd(eps, norm=norm, loss="ce", eot=eot),
    "apgd-dlr": lambda norm, eps, eot, classes: Apgd(eps, norm=norm, loss="dlr", eot=eot),
    "apgd-t": lambda norm, eps, eot, classes: Apgd(eps, norm=norm, loss="dlr_targeted",
                                                   targets=max(min(9, classes - 1), 1), eot=eot),
    "fab-t": lambda norm, eps, eot, classes: FabT(eps, norm=norm, targets=max(min(9, classes - 1), 1)),
    "square": lambda norm, eps, eot, classes: Square(eps, norm=norm, queries=5000),
}
RUNNERS = {Apgd: apgd, FabT: fab_t, Square: square}
# version -> (components in order, gradient draws per step); rand is for randomised defences
VERSIONS = {"standard": (("apgd-ce", "apgd-t", "fab-t", "square"), 1), "rand": (("apgd-ce", "apgd-dlr"), 20)}
CLEAN = "clean"  # `broken_by` of an image misclassified without any attack


@dataclasses.dataclass(frozen=True)
class AutoAttackResult:
    x_adv: np.ndarray  # the breaking example per image (the image itself where none broke it)
    labels: np.ndarray
    broken_by: np.ndarray  # per image: "clean", the component that broke it, or "" (robust)
    accuracy_after: dict  # "clean", then each component in order: robust accuracy after it

    @property
    def robust(self) -> np.ndarray:
        return self.broken_by == ""

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.mean())

    @property
    def clean_accuracy(self) -> float:
        return self.accuracy_after[CLEAN]

    def broken_share(self) -> dict:
        """Per component, the share of all images it broke (those robust until then)."""
        return {name: float(np.mean(self.broken_by == name)) for name in self.accuracy_after if name != CLEAN}


def components_of(version: str | Sequence[str]) -> tuple[tuple[str, ...], int]:
    """The components and gradient draws of a version name, or of a custom list of component names."""
    if isinstance(version, str):
        require(version in VERSIONS, f"unknown AutoAttack version {version!r}: choose one of "
                                     f"{', '.join(VERSIONS)} or give a list of components")
        return VERSIONS[version]
    names = tuple(version)
    require(names and all(name in COMPONENTS for name in names),
            f"AutoAttack components must be a non-empty list of {', '.join(COMPONENTS)}, got {list(names)}")
    require(len(set(names)) == len(names), f"AutoAttack components repeat: {list(names)}")
    return names, 1


def settings_of(version: str | Sequence[str], norm: str, eps: float, classes: int) -> list[tuple[str, object]]:
    """(component, its checked settings) in order: a bad version, norm or eps fails here, before any work."""
    names, eot = components_of(version)
    return [(name, COMPONENTS[name](norm, eps, eot, classes)) for name in names]


def accuracy_after(broken_by: np.ndarray, components: Sequence[str]) -> dict:
    """Robust accuracy left before any component ("clean") and after each, from the per-image
    `broken_by` (so parts measured apart can be joined first)."""
    return {name: float(np.mean(~np.isin(broken_by, [CLEAN, *components[:i]])))
            for i, name in enumerate([CLEAN, *components])}


def autoattack(model: keras.Model, x, y, *, eps: float, norm: str = "linf", version: str | Sequence[str] = "standard",
               seed: int = 0, first_index: int = 0, batch_size: int = 256,
               report: Callable[[str, float], None] | None = None) -> AutoAttackResult:
    """Runs the components of `version` in order, each on the images still robust.

    `report(component, robust accuracy after it)` is called after each component. Random draws
    depend on (seed, image index), image i's index being first_index + i.
    """
    components = settings_of(version, norm, eps, int(model.outputs[0].shape[-1]))
    x, labels = checked_batch(model, x, y)
    indices = first_index + np.arange(len(x), dtype=np.int64)
    broken_by = np.where(np.argmax(clean_logits(model, x, batch_size), -1) == labels, "", CLEAN).astype(object)
    x_adv = x.copy()
    accuracy_after = {CLEAN: float(np.mean(broken_by == ""))}
    stages = [f"{name} ({i} of {len(components)})" for i, (name, _) in enumerate(components, 1)]
    for (name, setting), share in zip(components, progress.parts([s.cost for _, s in components], stages)):
        todo = np.flatnonzero(broken_by == "")
        with share:
            if len(todo) and eps > 0:  # a zero budget leaves every image as it is
                result = RUNNERS[type(setting)](model, x[todo], labels[todo], setting, seed=seed,
                                                indices=indices[todo], batch_size=batch_size)
                broken = todo[result.success]
                broken_by[broken], x_adv[broken] = name, result.x_adv[result.success]
        accuracy_after[name] = float(np.mean(broken_by == ""))
        if report:
            report(name, accuracy_after[name])
    return AutoAttackResult(x_adv=x_adv, labels=labels, broken_by=broken_by.astype(str), accuracy_after=accuracy_after)
