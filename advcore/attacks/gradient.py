"""The gradient attacks (FGSM, FGM, PGD, MI-FGSM) of an `AttackSpec`: two compiled loops.

`attack` validates the inputs and runs it over batches as one `tf.function` per model
and spec shape (steps, eps and step size are tensors, so changing them does not retrace). The model
runs with ``training=False``. The standard loop gives every sample every step and keeps, per
sample, the best restart's last iterate; with ``early_stop`` a sample leaves at its first fooling
iterate and an unattacked one takes its place, which makes evaluating weak models cheap. The clean
input is always a candidate, so eps = 0 returns it and a misclassified sample counts as fooled.
`perturb` is the bare last-iterate attack for use inside a training step.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from advcore import graphs
from advcore.attacks import progress
from advcore.attacks import rows as rows_random
from advcore.attacks.checks import checked_inputs
from advcore.attacks.norms import NORMS, SCALINGS, l1_norm, l2_norm, linf_norm
from advcore.attacks.objectives import input_gradient, is_success, kl_divergence, objective, value_and_gradient
from advcore.attacks.spec import AttackSpec, is_int, require


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


def _start_rows(spec: AttackSpec, x, rows, eps, seed, restart):
    """Random starts that depend only on (seed, row, restart), not on how rows are batched: so a
    sample's attack is the same alone or in any batch, and the early-stopping loop follows exactly
    the paths of the every-step loop."""
    if not spec.random_start:
        return x
    return rows_random.random_starts(spec.norm, x, rows, eps, seed, restart, spec.clip_min, spec.clip_max)


def _iterate(model, spec: AttackSpec, x, labels, x_start, eps, step_size, steps, momentum, value_of=None):
    """`steps` ascent steps from `x_start` on the spec's objective, or on `value_of(logits)` when
    given; returns the last iterate."""
    box = NORMS[spec.norm].box(x, eps, spec.clip_min, spec.clip_max)

    def ascend(i, x_adv, velocity):
        if value_of is None:
            grad, _, _ = input_gradient(model, spec, x_adv, labels)
        else:
            grad, _, _ = value_and_gradient(model, x_adv, value_of)
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


TRADES_START_SCALE = 0.001  # TRADES starts its inner maximisation from x + 0.001 N(0, 1)


def perturb_divergence(model, spec: AttackSpec, x, eps, step_size, steps, seed):
    """TRADES's inner maximisation (Zhang et al. 2019): the last of `steps` ascent steps on
    KL(f(x) || f(x')) inside the spec's ball, from x + 0.001 N(0, 1) (at x' = x the divergence and its
    gradient vanish, so the start must differ). A constant for any outer tape, like `perturb`."""
    reference = tf.stop_gradient(model(x, training=False))
    noise = TRADES_START_SCALE * tf.random.stateless_normal(tf.shape(x), seed, dtype=x.dtype)
    start = tf.clip_by_value(x + noise, spec.clip_min, spec.clip_max)
    start = x + NORMS[spec.norm].project(start - x, eps)
    x_adv = _iterate(model, spec, x, None, start, eps, step_size, steps, 0.0,
                     value_of=lambda logits: kl_divergence(reference, logits))
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


def attack(model: keras.Model, x, y, spec: AttackSpec, *, target=None, batch_size: int = 256,
           seed: int = 0, first_index: int = 0) -> AttackResult:
    """Runs `spec` on images `x` with true labels `y` (and `target` classes if targeted).

    Never modifies `x`; memory is bounded by `batch_size`; the same seed gives the same result.
    Random starts depend on each image's index, counted from `first_index`: attacking a long array
    in slices with their offsets gives exactly the result of attacking it whole.
    """
    require(is_int(batch_size) and batch_size >= 1, f"batch_size must be an integer >= 1, got {batch_size!r}")
    x, labels = checked_inputs(model, x, y, spec, target)
    run = _compiled(model, spec)
    stretch = batch_size * (_EARLY_STOP_STRETCH if spec.early_stop else 1)
    outputs = []
    for first in range(0, len(x), stretch):
        out = run(x[first:first + stretch], labels[first:first + stretch], spec.eps, spec.effective_step_size,
                  spec.steps, spec.restarts, spec.momentum, seed, first_index + first, batch_size)
        outputs.append({key: value.numpy() for key, value in out.items()})
        progress.advance((first + stretch) / len(x))
    merged = {key: np.concatenate([o[key] for o in outputs]) for key in outputs[0]}
    return AttackResult(
        x_adv=merged["x_adv"], success=merged["success"], loss=merged["loss"],
        linf=merged["linf"], l2=merged["l2"], labels=merged["labels"],
        clean_predictions=np.argmax(merged["clean_logits"], -1),
        predictions=np.argmax(merged["logits"], -1), logits=merged["logits"],
    )
