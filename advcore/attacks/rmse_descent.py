"""Seed 004's perturbation routine (Woods et al. 2019), shared by explanations, ARA and training.

A perturbation delta is measured in RMSE: the root mean square over all pixels and channels, in
[0, 1] pixel units (an L2 ball of radius eps * sqrt(pixels)). delta starts at 0; step sizes decrease
linearly and add up to `eps * overshoot`; each step follows the loss gradient normalised to unit
RMSE (optionally with momentum) while a criterion holds, and otherwise steps back toward 0.

Criteria:
- explain: toward `labels` while inside the ball: delta hovers at its edge as the target's
  confidence rises (adversarial explanations).
- ball: away from `labels` while inside the ball (seed 004's adversarial training, eps 0.01).
- attack / btr: away from `labels` until the image is misclassified / its class's probability is
  at most 1/K; delta hovers at that boundary and the smallest crossing is kept (ARA, and l2-min
  training, eps 0.1).

Unlike the seed, images are kept in [0, 1] after every step.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advcore.attacks import precision

CRITERIA = ("explain", "ball", "attack", "btr")
_TINY = 1e-8


def rmse(delta) -> np.ndarray:
    delta = np.asarray(delta, dtype=np.float32)
    return np.sqrt(np.mean(np.square(delta), axis=tuple(range(1, delta.ndim))))


def rms(t: tf.Tensor) -> tf.Tensor:
    """Per-sample RMSE, shaped to broadcast over the image."""
    return tf.sqrt(tf.reduce_mean(tf.square(t), axis=[1, 2, 3], keepdims=True))


def descend(model, criterion: str, x, labels, eps, overshoot, steps, momentum: float = 0.0):
    """Runs the routine; returns the last delta, the smallest delta seen to fool each image and its
    RMSE (inf where none did; only the attack and btr criteria look for crossings).

    For attack and btr an image is done once it is fooled unperturbed, or once the steps left are
    too short to bring delta back below its best crossing; done images stop moving and the loop
    ends when all are done.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    count = tf.shape(x)[0]
    classes = tf.cast(model.outputs[0].shape[-1], tf.float32)
    steps_f = tf.cast(steps, tf.float32)
    total = eps * overshoot
    looks_for_crossing = criterion in ("attack", "btr")
    half = precision.computes_in_half(model)

    def fooled(logits):
        if criterion == "attack":
            return tf.argmax(logits, axis=1, output_type=tf.int32) != labels
        probability = tf.gather(tf.nn.softmax(logits), labels, batch_dims=1)
        return probability <= 1.0 / classes

    def keep_best(logits, delta, size, best, best_delta):
        improved = fooled(logits) & (size < best)
        return tf.where(improved, size, best), tf.where(improved[:, None, None, None], delta, best_delta)

    def body(step, delta, velocity, best, best_delta, done):
        with tf.GradientTape(persistent=half) as tape:
            tape.watch(delta)
            logits = tf.cast(model(x + delta, training=False), tf.float32)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        grad = precision.input_gradient(tape, loss, logits, delta, half)
        size = rms(delta)[:, 0, 0, 0]
        if looks_for_crossing:
            best, best_delta = keep_best(logits, delta, size, best, best_delta)
            follow = ~fooled(logits)
        else:
            follow = size < eps
            if criterion == "explain":
                grad = -grad  # toward the target class
        step_f = tf.cast(step, tf.float32)
        step_size = total * (steps_f - step_f) / (steps_f * (steps_f + 1) / 2)
        direction = tf.where(follow[:, None, None, None], grad, -delta)
        direction /= _TINY + rms(direction)
        if momentum > 0:
            velocity = momentum * velocity + (1 - momentum) * direction
            direction = velocity
        moved = tf.clip_by_value(x + delta + step_size * direction, 0.0, 1.0) - x
        if looks_for_crossing:
            left = total * (steps_f - step_f) * (steps_f - step_f + 1) / (steps_f * (steps_f + 1))
            done = done | (best <= 0) | (size - left >= best)
        delta = tf.where(done[:, None, None, None], delta, moved)
        return step + 1, delta, velocity, best, best_delta, done

    zeros = tf.zeros_like(x)
    start = (tf.constant(0), zeros, zeros, tf.fill([count], np.inf), zeros, tf.zeros([count], tf.bool))
    _, delta, _, best, best_delta, _ = tf.while_loop(
        lambda step, *state: (step < steps) & ~tf.reduce_all(state[-1]), body, start)
    if looks_for_crossing:  # the last step's result has not been looked at yet
        logits = tf.cast(model(x + delta, training=False), tf.float32)
        best, best_delta = keep_best(logits, delta, rms(delta)[:, 0, 0, 0], best, best_delta)
    return delta, best_delta, best


def ball_examples(model, x, labels, eps, steps):
    """Seed 004's adversarial training examples: `steps` steps away from the label inside the RMSE
    ball of radius eps (the steps add up to eps, so the last iterate never leaves it)."""
    delta, _, _ = descend(model, "ball", x, tf.cast(labels, tf.int32), eps, 1.0, steps)
    return tf.stop_gradient(x + delta)


def l2_min_examples(model, x, labels, eps, steps):
    """Seed 004's l2-min training examples: the smallest misclassifying perturbation found within
    RMSE eps; images it never misclassifies (and those already wrong) stay clean."""
    _, best_delta, _ = descend(model, "attack", x, tf.cast(labels, tf.int32), eps, 1.0, steps)
    return tf.stop_gradient(x + best_delta)
