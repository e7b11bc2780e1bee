"""Input gradients that survive mixed precision.

Under `mixed_float16` a network computes in float16 while its logits and losses are float32. The
loss gradient of a confidently classified image is tiny (softmax(p) - onehot ~ 1e-8) and would
underflow to zero on its way back through float16 layers, so an attack would not move that image.
Rescaling each sample's cotangent at the logits to a largest entry of 1, and the input gradient
back by the same factor in float32, keeps every sample's gradient in float16's range; in float32
models the gradient is taken directly.
"""

from __future__ import annotations

import tensorflow as tf


def computes_in_half(model) -> bool:
    policy = getattr(model, "dtype_policy", None)
    return getattr(policy, "compute_dtype", "float32") in ("float16", "bfloat16")


def input_gradient(tape: tf.GradientTape, total, logits, x, half: bool):
    """d total / d x for a tape that recorded logits = model(x) and total = f(logits); `half`: the
    model computes in float16 (the tape must then be persistent)."""
    if not half:
        return tape.gradient(total, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    cotangent = tf.cast(tape.gradient(total, logits, unconnected_gradients=tf.UnconnectedGradients.ZERO), tf.float32)
    scale = tf.reduce_max(tf.abs(cotangent), axis=-1, keepdims=True)
    scale = tf.where(scale > 0, scale, tf.ones_like(scale))
    gradient = tape.gradient(logits, x, output_gradients=tf.cast(cotangent / scale, logits.dtype),
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return tf.cast(gradient, tf.float32) * tf.reshape(scale, [-1] + [1] * (x.shape.rank - 1))
