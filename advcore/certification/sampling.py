"""Class counts of a classifier under Gaussian noise, drawn and counted inside one compiled loop.

Noise depends only on (seed, image index, phase, draw): it comes in blocks of `DRAWS` draws, each
from a stateless seed folded from those, so an image's counts are the same alone or in any batch of
copies, and a test set split by image index gives exactly the counts of the whole. Noisy copies are
not clipped to [0, 1]: the certificate holds for isotropic Gaussian noise in input space only.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from advcore import graphs

DRAWS = 100  # noise draws per stateless seed; a forward pass holds whole blocks
NOISY_BYTES = 64 * 2**20  # the noisy copies one forward pass may hold, by default


def default_batch(image_shape) -> int:
    """Noisy copies per forward pass: as many whole blocks as `NOISY_BYTES` of float32 images hold,
    at least one block and at most 10,000 copies."""
    per_copy = 4 * int(np.prod(image_shape))
    return int(np.clip(NOISY_BYTES // per_copy // DRAWS, 1, 10_000 // DRAWS)) * DRAWS


def image_key(seed: int, index: int, phase: int) -> np.ndarray:
    """The stateless seed of one image's draws in one phase (guess, estimate, predict)."""
    return np.array([seed * 4 + phase, index], dtype=np.int64)


def _counter(model: keras.Model):
    shape = list(model.inputs[0].shape[1:])
    classes = int(model.outputs[0].shape[-1])
    signature = [tf.TensorSpec(shape, tf.float32), tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int64),
                 tf.TensorSpec([2], tf.int64), tf.TensorSpec([], tf.int64)]

    def count(x, sigma, draws, key, blocks_per_pass):
        blocks = (draws + DRAWS - 1) // DRAWS

        def noise_block(block):
            return tf.random.stateless_normal([DRAWS, *shape], tf.random.experimental.stateless_fold_in(key, block))

        def body(first, counts):
            chosen = tf.range(first, tf.minimum(first + blocks_per_pass, blocks))
            noise = tf.reshape(tf.map_fn(noise_block, chosen, fn_output_signature=tf.TensorSpec([DRAWS, *shape])),
                               [-1, *shape])
            logits = model(x[None] + sigma * noise, training=False)
            predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
            wanted = first * DRAWS + tf.range(tf.size(predicted, out_type=tf.int64)) < draws  # the last block's rest
            found = tf.math.bincount(tf.boolean_mask(predicted, wanted), minlength=classes, maxlength=classes,
                                     dtype=tf.int64)
            return first + blocks_per_pass, counts + found

        _, counts = tf.while_loop(lambda first, _: first < blocks, body,
                                  (tf.constant(0, tf.int64), tf.zeros([classes], tf.int64)))
        return counts

    return graphs.compiled(model, "smoothing counts", count, signature)


def class_counts(model: keras.Model, image, sigma: float, draws: int, key, *, batch_size: int) -> np.ndarray:
    """How many of `draws` noisy copies of one image (H, W, C) the model puts in each class."""
    if batch_size < DRAWS or batch_size % DRAWS:
        raise ValueError(f"batch_size must be a positive multiple of {DRAWS}, got {batch_size}")
    return _counter(model)(tf.constant(image, tf.float32), tf.constant(sigma, tf.float32),
                           tf.constant(draws, tf.int64), tf.constant(key, tf.int64),
                           tf.constant(batch_size // DRAWS, tf.int64)).numpy()
