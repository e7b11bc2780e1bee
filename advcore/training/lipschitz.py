"""Seed 004's Lipschitz penalty and its adaptive weight psi (Woods et al. 2019, "robust additions").

The penalty is mean(|ds/dx|^2) over the batch and every pixel, where s is per sample one output: a
uniformly random logit or, with probability zeta, the margin logit_true - max_other ("tandem").
Training differentiates it again (double backprop), which smooths the network around the data.
"""

from __future__ import annotations

import tensorflow as tf

from advcore import attacks
from advcore.training.config import LipschitzConfig


def smoothed_output(logits, labels, seed, zeta: float):
    """Per sample, the output whose input gradient is penalised: a random logit, or (probability
    zeta) the true-vs-best-other margin. The draws depend on `seed` alone."""
    logits = _at_least_float32(logits)
    count, classes = tf.shape(logits)[0], tf.shape(logits)[1]
    chosen = tf.random.stateless_uniform([count], seed, 0, classes, dtype=tf.int32)
    random_logit = tf.gather(logits, chosen, batch_dims=1)
    use_margin = tf.random.stateless_uniform([count], seed + 1) < zeta
    return tf.where(use_margin, attacks.margin(logits, tf.cast(labels, tf.int32)), random_logit)


def penalised_forward(model, x, labels, seed, zeta: float, training: bool = True):
    """The model's logits on x and the penalty mean(|ds/dx|^2); both stay differentiable with
    respect to the weights for an enclosing tape."""
    with tf.GradientTape() as input_tape:
        input_tape.watch(x)
        logits = model(x, training=training)
        smoothed = tf.reduce_sum(smoothed_output(logits, labels, seed, zeta))
    gradient = input_tape.gradient(smoothed, x)
    return logits, tf.reduce_mean(tf.square(_at_least_float32(gradient)))


def _at_least_float32(t):
    """float16 (mixed precision) values in float32; float32 and float64 as they are."""
    return tf.cast(t, tf.float32) if t.dtype.size < 4 else t


def next_integral(integral, loss, config: LipschitzConfig):
    """r after a step with this class loss: r + clamp(-ln(loss / target), -max_decrease,
    max_increase), floored at 0."""
    change = tf.clip_by_value(-tf.math.log(tf.maximum(loss, 1e-12) / config.loss_target),
                              -config.max_decrease, config.max_increase)
    return tf.maximum(0.0, integral + change)


def psi(integral, config: LipschitzConfig):
    """The penalty's weight: psi_0 * exp(psi_rate * r)."""
    return config.psi_0 * tf.exp(config.psi_rate * integral)
