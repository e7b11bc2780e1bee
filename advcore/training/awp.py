"""Adversarial weight perturbation (Wu et al. 2020): the weight offsets v of one training step.

Every kernel (a weight of rank >= 2) moves toward higher adversarial loss by `gamma` times its own
norm: v_l = gamma ||w_l|| d_l / ||d_l||, where d_l sums `steps` normalised gradient steps (one step
gives the gradient's direction). Biases and normalisation parameters stay, as in the paper's code.
The trainer takes its gradient at w + v through `stateless_call`, so the variables themselves never
move: restoring them is exact by construction.
"""

from __future__ import annotations

import tensorflow as tf


def is_perturbed(weight) -> bool:
    return len(weight.shape) >= 2


def _unit(tensor):
    """tensor / ||tensor||, and zeros for a zero tensor (a step with no adversarial loss moves nothing)."""
    return tensor * tf.math.divide_no_nan(1.0, tf.norm(tensor))


def offsets(gradient_at, weights: list, gamma: float, steps: int = 1) -> list:
    """v for `weights` (tensors), from `gradient_at(shifted weights) -> gradients` of the loss to raise
    (None or zeros where a weight has none)."""
    sizes = [gamma * tf.norm(w) if is_perturbed(w) else None for w in weights]
    moved = [tf.zeros_like(w) for w in weights]
    for _ in range(steps):
        gradients = gradient_at([w + v for w, v in zip(weights, moved)])
        moved = [v if size is None or g is None else v + (size / steps) * _unit(tf.cast(g, v.dtype))
                 for v, g, size in zip(moved, gradients, sizes)]
    return [v if size is None else size * _unit(v) for v, size in zip(moved, sizes)]
