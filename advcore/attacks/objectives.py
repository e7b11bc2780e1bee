"""What an attack maximises: per-sample objectives on logits, success, and their input gradient."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advcore.attacks import precision
from advcore.attacks.spec import AttackSpec


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


def dlr(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Croce & Hein's difference of logits ratio, to maximise: -(z_y - max_{i!=y} z_i) / (z_1 - z_3),
    with z sorted in decreasing order. Invariant to shifting and scaling the logits."""
    logits = tf.cast(logits, tf.float32)
    top = tf.math.top_k(logits, 3).values
    return -margin(logits, labels) / (top[:, 0] - top[:, 2] + 1e-12)


def targeted_dlr(logits: tf.Tensor, labels: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """The targeted DLR loss, to maximise: -(z_y - z_t) / (z_1 - (z_3 + z_4) / 2)."""
    logits = tf.cast(logits, tf.float32)
    top = tf.math.top_k(logits, 4).values
    z_y = tf.gather(logits, labels, batch_dims=1)
    z_t = tf.gather(logits, targets, batch_dims=1)
    return -(z_y - z_t) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12)


def kl_divergence(reference_logits: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per sample KL(softmax(reference) || softmax(logits)): how far `logits` moved from the reference
    distribution (TRADES's and MART's robustness term)."""
    reference = tf.nn.log_softmax(tf.cast(reference_logits, tf.float32))
    moved = tf.nn.log_softmax(tf.cast(logits, tf.float32))
    return tf.reduce_sum(tf.exp(reference) * (reference - moved), axis=-1)


def is_success(logits: tf.Tensor, labels: tf.Tensor, targeted: bool) -> tf.Tensor:
    prediction = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    return tf.equal(prediction, labels) if targeted else tf.not_equal(prediction, labels)


def value_and_gradient(model, x, value_of):
    """Per-sample `value_of(logits)` at x, its input gradient and the logits; the weights get no
    gradient, and the model runs in inference mode."""
    half = precision.computes_in_half(model)
    with tf.GradientTape(persistent=half) as tape:
        tape.watch(x)
        logits = model(x, training=False)
        value = value_of(logits)
        total = tf.reduce_sum(value)
    return precision.input_gradient(tape, total, logits, x, half), logits, value


def input_gradient(model, spec: AttackSpec, x, labels):
    """Gradient of the summed objective w.r.t. the input; the weights get no gradient."""
    return value_and_gradient(model, x, lambda logits: objective(logits, labels, spec.loss, spec.targeted))
