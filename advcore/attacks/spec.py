"""What an attack is: `AttackSpec` (norm ball, steps, scaling, restarts, momentum, loss, target
mode), validated on creation, and the named presets (FGSM, FGM, PGD, MI-FGSM) built from it."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np

from advcore.attacks import progress
from advcore.attacks.norms import NORMS, SCALING_NORM, SCALINGS
from advcore.training.config import MIN_EPS

LOSSES = ("ce", "margin")
TARGET_MODES = ("untargeted", "targeted", "least_likely")


MAX_STEPS = 10_000  # far beyond any published evaluation (PGD-1000), short of "runs forever"
MAX_RESTARTS = 100


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """What to run. Validated on creation, so a bad spec fails before any work."""

    eps: float
    norm: Literal["linf", "l2"] = "linf"
    steps: int = 1
    step_size: float | None = None  # None: eps for one step, 1.25 eps with random start, else 2.5 eps/steps
    scaling: str | None = None  # gradient scaling; None: the norm's steepest ascent (sign / l2)
    random_start: bool = False
    restarts: int = 1
    momentum: float = 0.0  # MI-FGSM decay; 0 disables momentum
    loss: Literal["ce", "margin"] = "ce"
    target: Literal["untargeted", "targeted", "least_likely"] = "untargeted"
    early_stop: bool = False  # stop attacking a sample once it is fooled
    clip_min: float = 0.0
    clip_max: float = 1.0

    def __post_init__(self):
        require(self.norm in NORMS, f"unknown norm {self.norm!r}: choose one of {', '.join(NORMS)}")
        require(is_number(self.eps) and math.isfinite(self.eps) and self.eps >= 0,
                f"eps must be a finite number >= 0, got {self.eps!r}")
        require(self.eps == 0 or self.eps >= MIN_EPS,
                f"eps {self.eps:g} is below {MIN_EPS:g}, too small to move a pixel: use 0 for no attack")
        require(is_int(self.steps) and 1 <= self.steps <= MAX_STEPS,
                f"steps must be an integer in [1, {MAX_STEPS}], got {self.steps!r}")
        require(self.step_size is None or (is_number(self.step_size) and math.isfinite(self.step_size)
                                           and self.step_size > 0),
                f"step_size must be a finite number > 0, got {self.step_size!r}")
        require(self.scaling is None or self.scaling in SCALINGS,
                f"unknown scaling {self.scaling!r}: choose one of {', '.join(SCALINGS)}")
        require(self.scaling != "raw" or self.step_size is not None,
                "scaling 'raw' needs an explicit step_size (the constant the gradient is multiplied by)")
        require(is_int(self.restarts) and 1 <= self.restarts <= MAX_RESTARTS,
                f"restarts must be an integer in [1, {MAX_RESTARTS}], got {self.restarts!r}")
        require(self.restarts == 1 or self.random_start,
                "restarts > 1 need random_start=True (without it every restart is the same attack)")
        require(is_number(self.momentum) and 0 <= self.momentum <= 1,
                f"momentum must lie in [0, 1], got {self.momentum!r}")
        require(self.loss in LOSSES, f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        require(self.target in TARGET_MODES,
                f"unknown target mode {self.target!r}: choose one of {', '.join(TARGET_MODES)}")
        require(is_number(self.clip_min) and is_number(self.clip_max) and self.clip_min < self.clip_max,
                f"clip_min must be below clip_max, got [{self.clip_min}, {self.clip_max}]")
        if SCALING_NORM[self.effective_scaling] == self.norm and self.eps > 0:
            require(self.effective_step_size <= 2 * self.eps,
                    f"step_size {self.effective_step_size:g} exceeds the ball's diameter 2*eps = "
                    f"{2 * self.eps:g}: every step would be projected back; use step_size <= 2*eps")

    @property
    def effective_scaling(self) -> str:
        return self.scaling or NORMS[self.norm].steepest_scaling

    @property
    def effective_step_size(self) -> float:
        if self.step_size is not None:
            return float(self.step_size)
        if self.steps == 1:
            return 1.25 * self.eps if self.random_start else float(self.eps)
        return 2.5 * self.eps / self.steps

    @property
    def targeted(self) -> bool:
        return self.target != "untargeted"

    @property
    def cost(self) -> int:
        """Model evaluations per image at most (see `progress`): what this attack weighs in an estimate."""
        return self.steps * self.restarts * progress.GRADIENT

    def replace(self, **changes) -> "AttackSpec":
        return dataclasses.replace(self, **changes)

    def _graph_key(self) -> tuple:
        """The fields that change the traced graph; the others are fed as tensors."""
        return (self.norm, self.effective_scaling, self.momentum > 0, self.loss, self.target,
                self.random_start, self.early_stop, self.clip_min, self.clip_max)


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def fgsm(eps: float, **options) -> AttackSpec:
    """Fast gradient sign method: one sign step of size eps (1.25 eps with random_start)."""
    return AttackSpec(eps=eps, norm="linf", steps=1, **options)


def fgm_norm(scaling: str) -> str:
    """The ball a one-step attack with this gradient scaling is bounded in."""
    return "l2" if scaling == "l2" else "linf"


def fgm(eps: float, scaling: str = "sign", **options) -> AttackSpec:
    """One gradient step with a chosen scaling; bounded in L2 for 'l2', in Linf otherwise."""
    return AttackSpec(eps=eps, norm=fgm_norm(scaling), steps=1, scaling=scaling, **options)


def pgd(eps: float, norm: str = "linf", steps: int = 40, random_start: bool = True, **options) -> AttackSpec:
    """Projected gradient descent (Madry et al.) with a random start in the ball."""
    return AttackSpec(eps=eps, norm=norm, steps=steps, random_start=random_start, **options)


def mifgsm(eps: float, norm: str = "linf", steps: int = 10, momentum: float = 1.0, **options) -> AttackSpec:
    """Momentum iterative FGSM (Dong et al.): accumulated L1-normalised gradients, step eps/steps."""
    options.setdefault("step_size", eps / steps if eps > 0 else None)
    return AttackSpec(eps=eps, norm=norm, steps=steps, momentum=momentum, **options)


METHODS = ("fgsm", "fgm", "pgd", "mifgsm")


def build(method: str, eps: float, *, norm: str = "linf", steps: int | None = None, **options) -> AttackSpec:
    """A spec from a method name and options, as the CLI, plan files and pages name them.

    `steps` None takes the method's default; one-step methods refuse more steps. fgm takes its norm
    from its scaling (l2 -> L2 ball, otherwise Linf), so `norm` applies to pgd and mifgsm only.
    """
    if method in ("fgsm", "fgm"):
        require(steps in (None, 1), f"{method} takes one step; use pgd or mifgsm for {steps} steps")
        if method == "fgm":
            options["scaling"] = options.get("scaling") or "sign"
            return fgm(eps, **options)
        return fgsm(eps, **options)
    require(method in METHODS, f"unknown attack method {method!r}: choose one of {', '.join(METHODS)}")
    if steps is not None:
        options["steps"] = steps
    return (pgd if method == "pgd" else mifgsm)(eps, norm=norm, **options)
