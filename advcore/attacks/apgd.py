"""APGD (Croce & Hein, ICML 2020): PGD that needs no step size, AutoAttack's gradient member.

Each run starts at a random point of the eps ball and takes `steps` steps with momentum 0.75 from
a step size of 2 eps. At checkpoints (after 22% of the steps, then at intervals shrinking by 3% of
the steps down to 6%) a sample's step size is halved, and it goes back to its best point, when its
loss rose in at most 75% of the steps since the last checkpoint, or when neither its step size nor
its best loss changed since then. Losses: cross-entropy, DLR, and targeted DLR toward the 2nd, 3rd,
... most likely class of the clean image. A sample counts as fooled as soon as any iterate is
misclassified, and keeps that iterate; an unfooled sample keeps its highest-loss point.

A run is one compiled `tf.function` per model and graph-shaping settings, with the steps in a
`tf.while_loop`: no host round trip per step. Random starts depend only on (seed, image index, run).
"""

from __future__ import annotations

import dataclasses
import math

import keras
import tensorflow as tf

from advcore import graphs
from advcore.attacks import progress
from advcore.attacks import rows as rows_random
from advcore.attacks.gradient import AttackResult
from advcore.attacks.norms import NORMS, SCALINGS
from advcore.attacks.objectives import dlr, targeted_dlr, value_and_gradient
from advcore.attacks.remaining import run_attack, signature
from advcore.attacks.spec import is_int, is_number, require

APGD_LOSSES = ("ce", "dlr", "dlr_targeted")
MOMENTUM = 0.75  # weight of the new step against the last move (alpha)
RISE_SHARE = 0.75  # rho: a checkpoint halves the step if the loss rose in at most this share of steps
FIRST_CHECKPOINT, CHECKPOINT_SHRINK, SHORTEST_INTERVAL = 0.22, 0.03, 0.06


@dataclasses.dataclass(frozen=True)
class Apgd:
    """What to run. Validated on creation, so bad settings fail before any work."""

    eps: float
    norm: str = "linf"
    loss: str = "ce"
    steps: int = 100
    restarts: int = 1
    targets: int = 9  # dlr_targeted: one run toward each of the 2nd..(targets+1)-th most likely classes
    eot: int = 1  # input gradients averaged over this many forward passes (for randomised models)

    def __post_init__(self):
        require(self.norm in NORMS, f"unknown norm {self.norm!r}: choose one of {', '.join(NORMS)}")
        require(is_number(self.eps) and math.isfinite(self.eps) and self.eps >= 0,
                f"eps must be a finite number >= 0, got {self.eps!r}")
        require(self.loss in APGD_LOSSES, f"unknown APGD loss {self.loss!r}: choose one of {', '.join(APGD_LOSSES)}")
        for name in ("steps", "restarts", "targets", "eot"):
            value = getattr(self, name)
            require(is_int(value) and value >= 1, f"{name} must be an integer >= 1, got {value!r}")

    @property
    def targeted(self) -> bool:
        return self.loss == "dlr_targeted"

    def check_classes(self, classes: int) -> None:
        needed = {"ce": 2, "dlr": 3, "dlr_targeted": max(4, self.targets + 1)}[self.loss]
        require(classes >= needed, f"APGD with the {self.loss} loss (targets={self.targets}) needs a model of at "
                                   f"least {needed} classes, this one has {classes}")

    @property
    def cost(self) -> int:
        """Model evaluations per image at most (see `progress`): what this attack weighs in an estimate."""
        return self.steps * len(self.runs()) * self.eot * progress.GRADIENT

    def runs(self) -> list[tuple[int, int]]:
        """(target rank, run index) of each run: rank 0 for untargeted losses, else 2..targets+1."""
        ranks = range(2, self.targets + 2) if self.targeted else [0]
        return [(rank, i * self.restarts + restart) for i, rank in enumerate(ranks) for restart in range(self.restarts)]


def _loss_function(loss: str, labels, targets):
    if loss == "ce":
        return lambda logits: tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.cast(logits, tf.float32))
    if loss == "dlr":
        return lambda logits: dlr(logits, labels)
    return lambda logits: targeted_dlr(logits, labels, targets)


def _gradient(model, x, value_of, eot: int):
    """Value, input gradient and logits; the gradient averaged over `eot` passes."""
    if eot == 1:
        return value_and_gradient(model, x, value_of)

    def draw(i, total):
        grad, _, _ = value_and_gradient(model, x, value_of)
        return i + 1, total + grad

    _, total = tf.while_loop(lambda i, _: i < eot - 1, draw, (tf.constant(0), tf.zeros_like(x)))
    grad, logits, value = value_and_gradient(model, x, value_of)
    return (total + grad) / eot, logits, value


def _where(mask, new, old):
    return tf.where(tf.reshape(mask, [-1] + [1] * (new.shape.rank - 1)), new, old)


def _run(model, settings: Apgd, x, labels, targets, eps, steps, seed, rows, run):
    """One APGD run on a batch: the fooling (else highest-loss) point per sample and its logits."""
    norm = NORMS[settings.norm]
    direction = SCALINGS[norm.steepest_scaling]
    value_of = _loss_function(settings.loss, labels, targets)

    def project(z):
        return tf.clip_by_value(x + norm.project(z - x, eps), 0.0, 1.0)

    def gradient(point):
        return _gradient(model, point, value_of, settings.eot)

    def misclassified(logits):
        return tf.not_equal(tf.argmax(logits, -1, output_type=labels.dtype), labels)

    start = rows_random.random_starts(settings.norm, x, rows, eps, seed, run, 0.0, 1.0)
    grad, logits, value = gradient(start)
    count = tf.shape(x)[0]
    steps_f = tf.cast(steps, tf.float32)
    first_interval = tf.maximum(tf.cast(FIRST_CHECKPOINT * steps_f, tf.int32), 1)
    shrink = tf.maximum(tf.cast(CHECKPOINT_SHRINK * steps_f, tf.int32), 1)
    shortest = tf.maximum(tf.cast(SHORTEST_INTERVAL * steps_f, tf.int32), 1)
    state = {
        "x": start, "previous": start, "grad": grad, "value": value,
        "best_x": start, "best_grad": grad, "best_value": value,
        "fooled": misclassified(logits), "fooling_x": start,
        "step": tf.fill([count], 2.0 * eps), "rises": tf.zeros([count]),
        "value_at_check": value, "halved_at_check": tf.ones([count], tf.bool),
        "since_check": tf.constant(0), "interval": first_interval,
    }

    def body(i, s):
        weight = tf.where(i > 0, MOMENTUM, 1.0)
        z = project(s["x"] + direction(s["grad"], tf.reshape(s["step"], [-1, 1, 1, 1])))
        moved = project(s["x"] + weight * (z - s["x"]) + (1.0 - weight) * (s["x"] - s["previous"]))
        grad, logits, value = gradient(moved)
        now_fooled = misclassified(logits)
        improved = value > s["best_value"]
        s = s | {
            "previous": s["x"], "x": moved, "grad": grad, "value": value,
            "rises": s["rises"] + tf.cast(value > s["value"], tf.float32),
            "fooled": s["fooled"] | now_fooled, "fooling_x": _where(now_fooled, moved, s["fooling_x"]),
            "best_x": _where(improved, moved, s["best_x"]), "best_grad": _where(improved, grad, s["best_grad"]),
            "best_value": tf.where(improved, value, s["best_value"]), "since_check": s["since_check"] + 1,
        }
        return i + 1, tf.cond(s["since_check"] == s["interval"], lambda: checkpoint(s), lambda: s)

    def checkpoint(s):
        oscillating = s["rises"] <= RISE_SHARE * tf.cast(s["interval"], tf.float32)
        stalled = ~s["halved_at_check"] & (s["value_at_check"] >= s["best_value"])
        halve = oscillating | stalled
        return s | {
            "step": tf.where(halve, s["step"] / 2.0, s["step"]),
            "x": _where(halve, s["best_x"], s["x"]), "grad": _where(halve, s["best_grad"], s["grad"]),
            "halved_at_check": halve, "value_at_check": s["best_value"], "rises": tf.zeros_like(s["rises"]),
            "since_check": tf.constant(0), "interval": tf.maximum(s["interval"] - shrink, shortest),
        }

    _, state = tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), state))
    point = _where(state["fooled"], state["fooling_x"], state["best_x"])
    logits = tf.cast(model(point, training=False), tf.float32)
    return {"x_adv": point, "success": misclassified(logits), "loss": value_of(logits), "logits": logits}


def _compiled(model: keras.Model, settings: Apgd):
    return graphs.compiled(model, ("apgd", settings.norm, settings.loss, settings.eot),
                           lambda *args: _run(model, settings, *args), signature(model))


def apgd(model: keras.Model, x, y, settings: Apgd, *, seed: int = 0, first_index: int = 0, indices=None,
         batch_size: int = 256) -> AttackResult:
    """Runs APGD on images `x` with true labels `y`; each run attacks only the samples still robust.

    Random starts depend on each image's index: first_index, first_index + 1, ..., or `indices`.

    Images misclassified clean count as fooled with no perturbation. Never modifies `x`; the same
    seed gives the same result, and slices attacked with their offsets give the whole's result.
    """
    return run_attack(model, x, y, settings, _compiled, settings.steps, seed=seed, first_index=first_index,
                      indices=indices, batch_size=batch_size)
