"""Randomness that depends only on (seed, image index, draw), never on how images are batched.

An image's attack is then the same alone or in any batch, so attacking a long array in slices
with their offsets gives exactly the result of attacking it whole. Values are drawn per block of
64 consecutive image indices from a stateless seed (key, block) and gathered by index.
"""

from __future__ import annotations

import tensorflow as tf

from advcore.attacks.norms import NORMS

BLOCK = 64  # image indices whose values come from one draw


def per_row(draw, rows, row_shape: list[int], key):
    """`draw(block_shape, seed)` for the blocks `rows` (int64 image indices) fall in, gathered by row.

    `row_shape` is static; `key` is an int64 scalar that names the draw (seed, restart, iteration)."""
    first, last = tf.reduce_min(rows) // BLOCK, tf.reduce_max(rows) // BLOCK
    values = tf.map_fn(lambda block: draw([BLOCK, *row_shape], tf.stack([key, block])), tf.range(first, last + 1),
                       fn_output_signature=tf.TensorSpec([BLOCK, *row_shape], tf.float32))
    return tf.gather(tf.reshape(values, [-1, *row_shape]), rows - first * BLOCK)


def uniform(rows, size: int, key):
    """(len(rows), size) values uniform in [0, 1), one row per image index."""
    return tf.cond(tf.size(rows) > 0,
                   lambda: per_row(lambda shape, seed: tf.random.stateless_uniform(shape, seed), rows, [size], key),
                   lambda: tf.zeros([0, size]))


def start_key(seed, restart):
    """The key of a restart's random start (the one `attacks.attack` has always used)."""
    return tf.cast(seed, tf.int64) * 7919 + tf.cast(restart, tf.int64)


def random_starts(norm: str, x, rows, eps, seed, restart, clip_min: float, clip_max: float):
    """x plus a random point of the norm ball of radius eps, clipped to [clip_min, clip_max]."""
    def draw():
        noise = per_row(lambda shape, key: NORMS[norm].random_start(tf.constant(shape), eps, key), rows,
                        list(x.shape[1:]), start_key(seed, restart))
        return tf.clip_by_value(x + noise, clip_min, clip_max)

    return tf.cond(tf.size(rows) > 0, draw, lambda: x)
