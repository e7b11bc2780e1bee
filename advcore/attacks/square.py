"""Square Attack (Andriushchenko et al., ECCV 2020), Linf: score-based, no gradients.

It reads only the model's logits, so a model that hides its gradient (gradient masking) cannot hide
from it: that is its job in AutoAttack. It starts at vertical stripes of +-eps per channel, then
each query sets one random square window of the current best point to x +- eps (a random sign per
channel) and keeps the change if the margin logit_y - max_{i!=y} logit_i fell. The window covers a
share p of the pixels: 0.8 at first, halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000
of every 10,000 queries. Windows and signs depend only on (seed, image index, run, query).

A run is one compiled `tf.function` with the queries in a `tf.while_loop`, ending early once every
image of the batch is fooled.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import tensorflow as tf

from advcore import graphs
from advcore.attacks import rows as rows_random
from advcore.attacks.checks import checked_batch
from advcore.attacks.gradient import AttackResult
from advcore.attacks.objectives import margin
from advcore.attacks.remaining import attack_remaining, image_indices
from advcore.attacks.spec import is_int, is_number, require

HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # per 10,000 queries: p halves after each


@dataclasses.dataclass(frozen=True)
class Square:
    """What to run. Validated on creation, so bad settings fail before any work."""

    eps: float
    queries: int = 5000  # forward passes per image and run, the starting point included
    p_init: float = 0.8  # the first windows' share of the image's pixels
    restarts: int = 1
    norm: str = "linf"

    def __post_init__(self):
        require(self.norm == "linf", f"Square is built for the Linf norm only, got {self.norm!r}")
        require(is_number(self.eps) and math.isfinite(self.eps) and self.eps >= 0,
                f"eps must be a finite number >= 0, got {self.eps!r}")
        for name in ("queries", "restarts"):
            value = getattr(self, name)
            require(is_int(value) and value >= 1, f"{name} must be an integer >= 1, got {value!r}")
        require(is_number(self.p_init) and 0 < self.p_init <= 1, f"p_init must lie in (0, 1], got {self.p_init!r}")


def window_share(query, queries, p_init):
    """p at a query: p_init halved once for every schedule point passed (rescaled to `queries`)."""
    progress = tf.floor(tf.cast(query, tf.float32) / tf.cast(queries, tf.float32) * 10_000.0)
    halvings = tf.reduce_sum(tf.cast(progress > tf.constant(HALVINGS, tf.float32), tf.float32))
    return p_init / tf.pow(2.0, halvings)


def _run(model, settings: Square, x, labels, eps, queries, seed, rows, run):
    """One Square run on a batch: the best point per sample, whether it fools, and its logits."""
    _, height, width, channels = x.shape
    key = rows_random.start_key(seed, run) * 16_777_259
    lower, upper = tf.maximum(x - eps, 0.0), tf.minimum(x + eps, 1.0)

    def score(point):
        logits = tf.cast(model(point, training=False), tf.float32)
        return margin(logits, labels), logits

    def signs(values):
        return tf.where(values < 0.5, -1.0, 1.0)

    stripes = signs(rows_random.uniform(rows, width * channels, key))
    start = tf.clip_by_value(x + eps * tf.reshape(stripes, [-1, 1, width, channels]), lower, upper)
    start_margin, _ = score(start)
    grid_h = tf.reshape(tf.range(height), [1, height, 1, 1])
    grid_w = tf.reshape(tf.range(width), [1, 1, width, 1])

    def query(i, best, best_margin):
        share = window_share(i, queries, settings.p_init)
        side = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(share * height * width)), tf.int32), 1, min(height, width))
        draw = rows_random.uniform(rows, 2 + channels, key + tf.cast(i, tf.int64))
        top = tf.reshape(tf.cast(draw[:, 0] * tf.cast(height - side + 1, tf.float32), tf.int32), [-1, 1, 1, 1])
        left = tf.reshape(tf.cast(draw[:, 1] * tf.cast(width - side + 1, tf.float32), tf.int32), [-1, 1, 1, 1])
        window = (grid_h >= top) & (grid_h < top + side) & (grid_w >= left) & (grid_w < left + side)
        change = 2.0 * eps * tf.reshape(signs(draw[:, 2:]), [-1, 1, 1, channels])
        candidate = tf.clip_by_value(tf.where(window, best + change, best), lower, upper)
        candidate_margin, _ = score(candidate)
        improved = (best_margin > 0) & (candidate_margin < best_margin)
        return (i + 1, tf.where(tf.reshape(improved, [-1, 1, 1, 1]), candidate, best),
                tf.where(improved, candidate_margin, best_margin))

    _, best, best_margin = tf.while_loop(lambda i, _, m: (i < queries) & tf.reduce_any(m > 0), query,
                                         (tf.constant(1), start, start_margin))
    best_margin, logits = score(best)
    return {"x_adv": best, "success": best_margin <= 0, "loss": -best_margin, "logits": logits}


def _compiled(model: keras.Model, settings: Square):
    image = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    indices, scalar, count = tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32)
    return graphs.compiled(model, ("square", settings.norm, settings.p_init),
                           lambda *args: _run(model, settings, *args),
                           [image, indices, scalar, count, tf.TensorSpec([], tf.int64), indices, count])


def square(model: keras.Model, x, y, settings: Square, *, seed: int = 0, first_index: int = 0, indices=None,
           batch_size: int = 256) -> AttackResult:
    """Runs the Square Attack on images `x` with true labels `y`; each restart attacks only the
    samples still robust. Draws depend on each image's index (first_index + i, or `indices`);
    `loss` in the result is minus the margin (positive once fooled)."""
    require(is_int(batch_size) and batch_size >= 1, f"batch_size must be an integer >= 1, got {batch_size!r}")
    x, labels = checked_batch(model, x, y)
    run = _compiled(model, settings)

    def run_batch(images, batch_labels, targets, rows, run_index):
        out = run(images, batch_labels, settings.eps, settings.queries, seed, rows, run_index)
        return {key: value.numpy() for key, value in out.items()}

    return attack_remaining(model, x, labels, [(0, restart) for restart in range(settings.restarts)], run_batch,
                            indices=image_indices(len(x), first_index, indices), batch_size=batch_size)
