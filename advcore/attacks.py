"""Gradient attacks on logits classifiers: one spec, two compiled loops.

An `AttackSpec` describes the attack (norm ball, steps, gradient scaling, restarts, momentum, loss,
target mode); `attack` validates the inputs and runs it over batches as one `tf.function` per model
and spec shape (steps, eps and step size are tensors, so changing them does not retrace). The model
runs with ``training=False``. The standard loop gives every sample every step and keeps, per
sample, the best restart's last iterate; with ``early_stop`` a sample leaves at its first fooling
iterate and an unattacked one takes its place, which makes evaluating weak models cheap. The clean
input is always a candidate, so eps = 0 returns it and a misclassified sample counts as fooled.
`perturb` is the bare last-iterate attack for use inside a training step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from advcore import graphs, precision
from advcore.norms import NORMS, SCALING_NORM, SCALINGS, l1_norm, l2_norm, linf_norm

LOSSES = ("ce", "margin")
TARGET_MODES = ("untargeted", "targeted", "least_likely")


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
        _require(self.norm in NORMS, f"unknown norm {self.norm!r}: choose one of {', '.join(NORMS)}")
        _require(_is_number(self.eps) and math.isfinite(self.eps) and self.eps >= 0,
                 f"eps must be a finite number >= 0, got {self.eps!r}")
        _require(_is_int(self.steps) and self.steps >= 1, f"steps must be an integer >= 1, got {self.steps!r}")
        _require(self.step_size is None or (_is_number(self.step_size) and math.isfinite(self.step_size)
                                            and self.step_size > 0),
                 f"step_size must be a finite number > 0, got {self.step_size!r}")
        _require(self.scaling is None or self.scaling in SCALINGS,
                 f"unknown scaling {self.scaling!r}: choose one of {', '.join(SCALINGS)}")
        _require(self.scaling != "raw" or self.step_size is not None,
                 "scaling 'raw' needs an explicit step_size (the constant the gradient is multiplied by)")
        _require(_is_int(self.restarts) and self.restarts >= 1,
                 f"restarts must be an integer >= 1, got {self.restarts!r}")
        _require(self.restarts == 1 or self.random_start,
                 "restarts > 1 need random_start=True (without it every restart is the same attack)")
        _require(_is_number(self.momentum) and 0 <= self.momentum <= 1,
                 f"momentum must lie in [0, 1], got {self.momentum!r}")
        _require(self.loss in LOSSES, f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        _require(self.target in TARGET_MODES,
                 f"unknown target mode {self.target!r}: choose one of {', '.join(TARGET_MODES)}")
        _require(_is_number(self.clip_min) and _is_number(self.clip_max) and self.clip_min < self.clip_max,
                 f"clip_min must be below clip_max, got [{self.clip_min}, {self.clip_max}]")
        if SCALING_NORM[self.effective_scaling] == self.norm and self.eps > 0:
            _require(self.effective_step_size <= 2 * self.eps,
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

    def replace(self, **changes) -> "AttackSpec":
        return dataclasses.replace(self, **changes)

    def _graph_key(self) -> tuple:
        """The fields that change the traced graph; the others are fed as tensors."""
        return (self.norm, self.effective_scaling, self.momentum > 0, self.loss, self.target,
                self.random_start, self.early_stop, self.clip_min, self.clip_max)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# ----------------------------------------------------------------------------- presets

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
        _require(steps in (None, 1), f"{method} takes one step; use pgd or mifgsm for {steps} steps")
        if method == "fgm":
            options["scaling"] = options.get("scaling") or "sign"
            return fgm(eps, **options)
        return fgsm(eps, **options)
    _require(method in METHODS, f"unknown attack method {method!r}: choose one of {', '.join(METHODS)}")
    if steps is not None:
        options["steps"] = steps
    return (pgd if method == "pgd" else mifgsm)(eps, norm=norm, **options)


# ----------------------------------------------------------------------------- objectives

def margin(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """logit[label] - max of the other logits: positive iff the label is the prediction."""
    onehot = tf.one_hot(labels, tf.shape(logits)[-1], on_value=True, off_value=False)
    label_logit = tf.reduce_max(tf.where(onehot, logits, -np.inf), axis=-1)
    other_logit = tf.reduce_max(tf.where(onehot, -np.inf, logits), axis=-1)
    return label_logit - other_logit


def objective(logits: tf.Tensor, labels: tf.Tensor, loss: str, targeted: bool) -> tf.Tensor:
    """Per-sample value the attack maximises (away from the label, or toward the target)."""
    logits = tf.cast(logits, tf.float32)
    if loss == "ce":
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        return -ce if targeted else ce
    m = margin(logits, labels)
    return m if targeted else -m


def is_success(logits: tf.Tensor, labels: tf.Tensor, targeted: bool) -> tf.Tensor:
    prediction = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    return tf.equal(prediction, labels) if targeted else tf.not_equal(prediction, labels)


# ----------------------------------------------------------------------------- compiled loop

def input_gradient(model, spec: AttackSpec, x, labels):
    """Gradient of the summed objective w.r.t. the input; the weights get no gradient."""
    half = precision.computes_in_half(model)
    with tf.GradientTape(persistent=half) as tape:
        tape.watch(x)
        logits = model(x, training=False)
        value = objective(logits, labels, spec.loss, spec.targeted)
        total = tf.reduce_sum(value)
    return precision.input_gradient(tape, total, logits, x, half), logits, value


def _step(spec: AttackSpec, x_adv, x0, grad, velocity, eps, step_size, momentum, box=None):
    """One ascent step, then clip to the valid range, then project onto the ball around x0.

    Clipping first is safe: the projection only moves points toward x0, which is in range. Where
    the ball is a box (Linf) both are one clip to the precomputed `box` bounds.
    """
    if spec.momentum > 0:
        velocity = momentum * velocity + grad / tf.maximum(l1_norm(grad), 1e-12)
        grad = velocity
    x_adv = x_adv + SCALINGS[spec.effective_scaling](grad, step_size)
    if box is not None:
        return tf.clip_by_value(x_adv, *box), velocity
    x_adv = tf.clip_by_value(x_adv, spec.clip_min, spec.clip_max)
    return x0 + NORMS[spec.norm].project(x_adv - x0, eps), velocity


def _start(spec: AttackSpec, x, eps, seed):
    """A random start for a whole batch from one seed: the cheap kind, for training steps."""
    if not spec.random_start:
        return x
    noise = NORMS[spec.norm].random_start(tf.shape(x), eps, seed)
    return tf.clip_by_value(x + noise, spec.clip_min, spec.clip_max)


_NOISE_BLOCK = 64  # rows whose random starts come from one draw


def _start_rows(spec: AttackSpec, x, rows, eps, seed, restart):
    """Random starts that depend only on (seed, row, restart), not on how rows are batched.

    So a sample's attack is the same alone or in any batch, and the early-stopping loop follows
    exactly the paths of the every-step loop. Noise is drawn per block of 64 consecutive rows.
    """
    if not spec.random_start:
        return x

    def draw():
        first, last = tf.reduce_min(rows) // _NOISE_BLOCK, tf.reduce_max(rows) // _NOISE_BLOCK
        block_shape = tf.concat([[_NOISE_BLOCK], tf.shape(x)[1:]], 0)
        noise = tf.map_fn(
            lambda block: NORMS[spec.norm].random_start(
                block_shape, eps, tf.stack([seed * 7919 + tf.cast(restart, tf.int64), block])),
            tf.range(first, last + 1), fn_output_signature=tf.TensorSpec([None, *x.shape[1:]], tf.float32))
        noise = tf.reshape(noise, tf.concat([[-1], tf.shape(x)[1:]], 0))
        return tf.clip_by_value(x + tf.gather(noise, rows - first * _NOISE_BLOCK), spec.clip_min, spec.clip_max)

    return tf.cond(tf.size(rows) > 0, draw, lambda: x)


def _iterate(model, spec: AttackSpec, x, labels, x_start, eps, step_size, steps, momentum):
    """`steps` ascent steps from `x_start`; returns the last iterate."""
    box = NORMS[spec.norm].box(x, eps, spec.clip_min, spec.clip_max)

    def ascend(i, x_adv, velocity):
        grad, _, _ = input_gradient(model, spec, x_adv, labels)
        return (i + 1, *_step(spec, x_adv, x, grad, velocity, eps, step_size, momentum, box))

    # an explicit loop: Keras traces train steps without AutoGraph
    _, x_adv, _ = tf.while_loop(lambda i, *_: i < steps, ascend, (tf.constant(0), x_start, tf.zeros_like(x)))
    return x_adv


def perturb(model, spec: AttackSpec, x, labels, eps, step_size, steps, seed, momentum=0.0):
    """The last iterate of the attack, for use inside a training step (graph mode).

    No bookkeeping and no extra forward passes: exactly `steps` forward+backward passes. The result
    is a constant for any outer tape (its creation is not differentiated through).
    """
    if spec.target == "least_likely":
        labels = tf.argmin(model(x, training=False), axis=-1, output_type=labels.dtype)
    x_adv = _iterate(model, spec, x, labels, _start(spec, x, eps, seed), eps, step_size, steps, momentum)
    return tf.stop_gradient(x_adv)


def _evaluated(model, spec: AttackSpec, x, labels, logits=None, value=None) -> dict:
    """A candidate point per sample with what the attack needs to rank candidates."""
    logits = tf.cast(model(x, training=False) if logits is None else logits, tf.float32)
    if value is None:
        value = objective(logits, labels, spec.loss, spec.targeted)
    return {"x": x, "logits": logits, "value": value, "success": is_success(logits, labels, spec.targeted)}


def _wins(new: dict, old: dict):
    """Fooling beats not fooling; between equals the higher objective wins."""
    return (new["success"] & ~old["success"]) | ((new["success"] == old["success"]) & (new["value"] > old["value"]))


def _where_rows(mask, new, old):
    """Per-row choice between two tensors of any rank (mask has one entry per row)."""
    return tf.where(tf.reshape(mask, [-1] + [1] * (new.shape.rank - 1)), new, old)


def _clean(model, spec: AttackSpec, x, labels, chunk):
    """The clean input as the first candidate (so eps = 0 returns it, and a misclassified sample
    counts as fooled with no perturbation), and the labels the attack works with."""
    logits = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False,
                            element_shape=tf.TensorShape([None, model.outputs[0].shape[-1]]))
    for first in tf.range(0, tf.shape(x)[0], chunk):
        logits = logits.write(logits.size(), tf.cast(model(x[first:first + chunk], training=False), tf.float32))
    logits = logits.concat()
    if spec.target == "least_likely":
        labels = tf.argmin(logits, axis=-1, output_type=labels.dtype)
    return labels, _evaluated(model, spec, x, labels, logits)


def _attack_every_step(model, spec: AttackSpec, x, labels, eps, step_size, steps, restarts, momentum,
                       seed, first_row, pool_size):
    """Standard PGD: every sample takes every step; per sample the best restart's last iterate."""
    labels, clean = _clean(model, spec, x, labels, pool_size)
    rows = first_row + tf.range(tf.shape(x, out_type=tf.int64)[0])
    best = clean
    for restart in tf.range(restarts):
        start = _start_rows(spec, x, rows, eps, seed, restart)
        new = _evaluated(model, spec, _iterate(model, spec, x, labels, start, eps, step_size, steps, momentum),
                         labels)
        wins = _wins(new, best)
        best = {key: _where_rows(wins, new[key], best[key]) for key in best}
    return _result(x, labels, clean["logits"], best)


def _attack_until_fooled(model, spec: AttackSpec, x, labels, eps, step_size, steps, restarts, momentum,
                         seed, first_row, pool_size):
    """The same attack, but a sample leaves at its first fooling iterate and a new one takes its place.

    The unbroken samples are kept in a pool of `pool_size` rows, topped up from the queue of the
    samples not yet attacked, so every step does a full batch of useful work. Each row keeps its
    own step and restart count and follows the same path as in `_attack_every_step` (the random
    starts depend on the row alone) until it leaves: this finds every sample that loop fools.
    """
    labels, clean = _clean(model, spec, x, labels, pool_size)
    best = clean  # rows that are never fooled take the best of their restarts' last iterates
    queue = tf.where(~clean["success"])[:, 0]  # samples fooled clean are done already
    head = tf.constant(0, tf.int64)
    shapes = {"row": [None], "x": [None, *x.shape[1:]], "logits": [None, clean["logits"].shape[-1]],
              "value": [None]}
    fooled = {key: tf.TensorArray(tf.int64 if key == "row" else tf.float32, size=0, dynamic_size=True,
                                  infer_shape=False, element_shape=tf.TensorShape(shape))
              for key, shape in shapes.items()}
    empty = queue[:0]
    pool = {"row": empty, "x_adv": tf.gather(x, empty), "step": tf.cast(empty, tf.int32),
            "restart": tf.cast(empty, tf.int32)}
    if spec.momentum > 0:
        pool["velocity"] = tf.gather(x, empty)

    while head < tf.size(queue, out_type=tf.int64) or tf.size(pool["row"]) > 0:
        tf.autograph.experimental.set_loop_options(shape_invariants=[
            (pool[key], tf.TensorShape([None]).concatenate(pool[key].shape[1:])) for key in pool])
        admitted = queue[head:head + tf.cast(pool_size, tf.int64) - tf.size(pool["row"], out_type=tf.int64)]
        head += tf.size(admitted, out_type=tf.int64)
        fresh = {"row": admitted, "step": tf.zeros_like(admitted, tf.int32),
                 "restart": tf.zeros_like(admitted, tf.int32),
                 "x_adv": _start_rows(spec, tf.gather(x, admitted), first_row + admitted, eps, seed, 0)}
        if spec.momentum > 0:
            fresh["velocity"] = tf.zeros_like(fresh["x_adv"])
        pool = {key: tf.concat([pool[key], fresh[key]], 0) for key in pool}

        row_labels, x0 = tf.gather(labels, pool["row"]), tf.gather(x, pool["row"])
        grad, logits, value = input_gradient(model, spec, pool["x_adv"], row_labels)
        candidate = _evaluated(model, spec, pool["x_adv"], row_labels, logits, value)
        out = tf.where(candidate["success"])[:, 0]
        fooled = {key: ta.write(ta.size(), tf.gather(pool["row"] if key == "row" else candidate[key], out))
                  for key, ta in fooled.items()}

        ended = (pool["step"] == steps) & ~candidate["success"]  # a restart's last iterate, unbroken
        index = tf.where(ended)[:, 0]
        ended_rows = tf.gather(pool["row"], index)
        old = {key: tf.gather(value, ended_rows) for key, value in best.items()}
        new = {key: tf.gather(value, index) for key, value in candidate.items()}
        wins = _wins(new, old)
        best = {key: tf.tensor_scatter_nd_update(best[key], ended_rows[:, tf.newaxis],
                                                 _where_rows(wins, new[key], old[key])) for key in best}

        again = ended & (pool["restart"] + 1 < restarts)
        velocity = pool.get("velocity", grad)  # without momentum `_step` ignores it
        stepped, velocity = _step(spec, pool["x_adv"], x0, grad, velocity, eps, step_size, momentum)
        restart_count = pool["restart"] + tf.cast(again, tf.int32)
        for restart in tf.range(1, restarts):  # fresh random starts for the rows beginning a restart
            pick = tf.where(again & (restart_count == restart))[:, 0]
            stepped = tf.tensor_scatter_nd_update(stepped, pick[:, tf.newaxis], _start_rows(
                spec, tf.gather(x0, pick), first_row + tf.gather(pool["row"], pick), eps, seed, restart))
        advanced = {"row": pool["row"], "x_adv": stepped, "restart": restart_count,
                    "step": tf.where(again, 0, pool["step"] + 1)}
        if spec.momentum > 0:
            advanced["velocity"] = _where_rows(again, tf.zeros_like(velocity), velocity)
        stay = tf.where(~candidate["success"] & ~(ended & ~again))[:, 0]
        pool = {key: tf.gather(value, stay) for key, value in advanced.items()}

    index = fooled["row"].concat()[:, tf.newaxis]
    final = {key: tf.tensor_scatter_nd_update(best[key], index, fooled[key].concat())
             for key in ("x", "logits", "value")}
    final["success"] = tf.tensor_scatter_nd_update(best["success"], index, tf.ones_like(index[:, 0], tf.bool))
    return _result(x, labels, clean["logits"], final)


def _result(x, labels, clean_logits, best: dict) -> dict:
    delta = best["x"] - x
    return {
        "x_adv": best["x"], "success": best["success"], "loss": best["value"],
        "logits": best["logits"], "clean_logits": clean_logits, "labels": labels,
        "linf": tf.reshape(linf_norm(delta), [-1]), "l2": tf.reshape(l2_norm(delta), [-1]),
    }


def _compiled(model: keras.Model, spec: AttackSpec, loop=None):
    """One traced graph per model, loop and graph-shaping spec fields, shared by later calls.

    A loop takes (model, spec, x, labels, eps, step_size, steps, restarts, momentum, seed,
    first_row, pool_size); the default is the spec's attack loop.
    """
    loop = loop or (_attack_until_fooled if spec.early_stop else _attack_every_step)
    image = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    scalar, count, row = tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int64)
    signature = [image, tf.TensorSpec([None], tf.int64), scalar, scalar, count, count, scalar, row, row, count]
    return graphs.compiled(model, (loop, spec._graph_key()), lambda *args: loop(model, spec, *args), signature)


# Early stopping keeps a pool of `batch_size` rows busy over a longer stretch of the input.
_EARLY_STOP_STRETCH = 16


# ----------------------------------------------------------------------------- public API

@dataclasses.dataclass(frozen=True)
class AttackResult:
    x_adv: np.ndarray  # float32 NHWC, within eps of x and within [clip_min, clip_max]
    success: np.ndarray  # bool: misclassified (untargeted) or classified as the target
    loss: np.ndarray  # the objective at x_adv: CE (or -margin) away from the label, minus that toward a target
    linf: np.ndarray  # per-sample distances to the input
    l2: np.ndarray
    labels: np.ndarray  # the true labels (untargeted) or the targets the attack aimed at
    clean_predictions: np.ndarray
    predictions: np.ndarray  # at x_adv
    logits: np.ndarray  # at x_adv

    @property
    def success_rate(self) -> float:
        return float(self.success.mean())


def check_images(x, clip_min: float = 0.0, clip_max: float = 1.0) -> np.ndarray:
    """A float32 NHWC batch within the valid range, or a ValueError saying what is wrong."""
    x = np.asarray(x)
    if x.dtype == np.uint8 or np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"images are {x.dtype}; AdvLab expects float32 in [0, 1]: "
                         "convert with x.astype('float32') / 255")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"images must be floating point, got {x.dtype}")
    if x.ndim == 4 and len(x) == 0:
        raise ValueError("the batch holds no images")
    if x.ndim != 4:
        raise ValueError(f"images must be a batch of shape (N, H, W, C), got shape {x.shape}"
                         + (" (for one image use x[None])" if x.ndim == 3 else ""))
    if not np.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    if x.size and (x.min() < clip_min - 1e-6 or x.max() > clip_max + 1e-6):
        raise ValueError(f"image values must lie in [{clip_min}, {clip_max}], found "
                         f"[{x.min():g}, {x.max():g}]" + (" (divide 0..255 images by 255)" if x.max() > 1.5 else ""))
    return x.astype(np.float32, copy=False)


def check_labels(labels, count: int, num_classes: int, what: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (count,):
        hint = " (pass class indices, not one-hot vectors)" if labels.ndim == 2 else ""
        raise ValueError(f"{what} must have shape ({count},), one class index per image, "
                         f"got shape {labels.shape}{hint}")
    if count and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what} must be integer class indices, got {labels.dtype}")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def checked_batch(model: keras.Model, x, labels, what: str = "labels", clip_min: float = 0.0,
                  clip_max: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Images the model takes, in range, and one class index of the model per image."""
    x = check_images(x, clip_min, clip_max)
    num_classes = int(model.outputs[0].shape[-1])
    from advcore.models import check_compatible  # the models module imports Keras layers lazily

    check_compatible(model, x.shape[1:], num_classes)
    return x, check_labels(labels, len(x), num_classes, what)


def checked_inputs(model: keras.Model, x, y, spec: AttackSpec, target=None) -> tuple[np.ndarray, np.ndarray]:
    """The images, and the labels the attack works with (true labels or targets), after every check."""
    if not isinstance(spec, AttackSpec):
        raise TypeError(f"spec must be an AttackSpec, got {type(spec).__name__}")
    x, y = checked_batch(model, x, y, "labels", spec.clip_min, spec.clip_max)
    num_classes = int(model.outputs[0].shape[-1])
    if spec.target == "targeted":
        _require(target is not None, "a targeted attack needs target classes (target=...)")
        return x, check_labels(np.broadcast_to(target, y.shape) if np.ndim(target) == 0 else target,
                               len(y), num_classes, "target")
    _require(target is None, f"target classes were given but the attack is {spec.target!r}; "
                             "use target='targeted'")
    return x, y


def attack(model: keras.Model, x, y, spec: AttackSpec, *, target=None, batch_size: int = 256,
           seed: int = 0, first_index: int = 0) -> AttackResult:
    """Runs `spec` on images `x` with true labels `y` (and `target` classes if targeted).

    Never modifies `x`; memory is bounded by `batch_size`; the same seed gives the same result.
    Random starts depend on each image's index, counted from `first_index`: attacking a long array
    in slices with their offsets gives exactly the result of attacking it whole.
    """
    _require(_is_int(batch_size) and batch_size >= 1, f"batch_size must be an integer >= 1, got {batch_size!r}")
    x, labels = checked_inputs(model, x, y, spec, target)
    run = _compiled(model, spec)
    stretch = batch_size * (_EARLY_STOP_STRETCH if spec.early_stop else 1)
    outputs = []
    for first in range(0, len(x), stretch):
        out = run(x[first:first + stretch], labels[first:first + stretch], spec.eps, spec.effective_step_size,
                  spec.steps, spec.restarts, spec.momentum, seed, first_index + first, batch_size)
        outputs.append({key: value.numpy() for key, value in out.items()})
    merged = {key: np.concatenate([o[key] for o in outputs]) for key in outputs[0]}
    return AttackResult(
        x_adv=merged["x_adv"], success=merged["success"], loss=merged["loss"],
        linf=merged["linf"], l2=merged["l2"], labels=merged["labels"],
        clean_predictions=np.argmax(merged["clean_logits"], -1),
        predictions=np.argmax(merged["logits"], -1), logits=merged["logits"],
    )
