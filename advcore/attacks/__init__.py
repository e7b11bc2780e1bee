"""Attacks on logits classifiers, and the pieces they share.

`from advcore import attacks` gives the public API: specs and presets (`spec`), the compiled
gradient attacks (`gradient`), objectives and input gradients (`objectives`) and input checks
(`checks`). The threat-model geometry (`norms`), mixed-precision gradients (`precision`), per-step
traces (`trace`) and seed 004's RMSE descent (`rmse_descent`) are imported by module.
"""

from advcore.attacks.checks import check_images, check_labels, checked_batch, checked_inputs
from advcore.attacks.gradient import AttackResult, attack, perturb, perturb_divergence
from advcore.attacks.objectives import input_gradient, is_success, kl_divergence, margin, objective
from advcore.attacks.spec import LOSSES, METHODS, TARGET_MODES, AttackSpec, build, fgm, fgm_norm, fgsm, mifgsm, pgd

__all__ = [
    "AttackResult", "AttackSpec", "LOSSES", "METHODS", "TARGET_MODES", "attack", "build", "check_images",
    "check_labels", "checked_batch", "checked_inputs", "fgm", "fgm_norm", "fgsm", "input_gradient", "is_success",
    "kl_divergence", "margin", "mifgsm", "objective", "perturb", "perturb_divergence", "pgd",
]
