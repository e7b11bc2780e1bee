"""Square Attack (Andriushchenko et al., ECCV 2020), Linf and L2: score-based, no gradients.

It reads only the model's logits, so a model that hides its gradient (gradient masking) cannot hide
from it: that is its job in AutoAttack. Each query changes one random square window of the current
best point and keeps the change if the margin logit_y - max_{i!=y} logit_i fell. The window covers
a share p of the pixels: 0.8 at first, halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and
8000 of every 10,000 queries.
- Linf: the start is vertical stripes of +-eps per channel; a query sets the window to x +- eps,
  one random sign per channel.
- L2: the start is a 5 x 5 grid of "pseudo-Gaussian" squares (concentric rectangles weighted
  1/n^2, positive over one half and negative over the other) with random signs, scaled to eps; a
  query moves the perturbation's mass out of a second random window into a fresh such square,
  keeping the L2 norm at eps.
Windows, signs and orientations depend only on (seed, image index, run, query). A run is one
compiled `tf.function` with the queries in a `tf.while_loop`, ending once every image is fooled.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from advcore import graphs
from advcore.attacks import progress
from advcore.attacks import rows as rows_random
from advcore.attacks.gradient import AttackResult
from advcore.attacks.norms import NORMS
from advcore.attacks.objectives import margin
from advcore.attacks.remaining import run_attack, signature
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
        require(self.norm in NORMS, f"unknown norm {self.norm!r}: choose one of {', '.join(NORMS)}")
        require(is_number(self.eps) and math.isfinite(self.eps) and self.eps >= 0,
                f"eps must be a finite number >= 0, got {self.eps!r}")
        for name in ("queries", "restarts"):
            value = getattr(self, name)
            require(is_int(value) and value >= 1, f"{name} must be an integer >= 1, got {value!r}")
        require(is_number(self.p_init) and 0 < self.p_init <= 1, f"p_init must lie in (0, 1], got {self.p_init!r}")

    def check_classes(self, classes: int) -> None:
        """Any classifier will do: the margin needs two classes, which every model AdvLab loads has."""

    @property
    def cost(self) -> int:
        """Model evaluations per image at most (see `progress`): one forward pass a query."""
        return self.queries * self.restarts * progress.FORWARD

    def runs(self) -> list[tuple[int, int]]:
        return [(0, restart) for restart in range(self.restarts)]


def window_share(query, queries, p_init):
    """p at a query: p_init halved once for every schedule point passed (rescaled to `queries`)."""
    progress = tf.floor(tf.cast(query, tf.float32) / tf.cast(queries, tf.float32) * 10_000.0)
    halvings = tf.reduce_sum(tf.cast(progress > tf.constant(HALVINGS, tf.float32), tf.float32))
    return p_init / tf.pow(2.0, halvings)


def _signs(values):
    return tf.where(values < 0.5, -1.0, 1.0)


def _window(grid_h, grid_w, top, left, side):
    """(N, H, W, 1) mask of the side x side squares at per-row corners (top, left)."""
    return (grid_h >= top) & (grid_h < top + side) & (grid_w >= left) & (grid_w < left + side)


def _corner(draw, extent, side):
    """A uniform corner coordinate in [0, extent - side] per row, from uniforms `draw`."""
    return tf.reshape(tf.cast(draw * tf.cast(extent - side + 1, tf.float32), tf.int32), [-1, 1, 1, 1])


def _inverse_square_sums(length: int):
    """sums[m] = 1 + 1/4 + ... + 1/m^2, for m up to `length`."""
    return tf.cumsum(tf.concat([[0.0], 1.0 / tf.square(tf.range(1, length + 1, dtype=tf.float32))], 0))


def pseudo_gaussian(row, column, side, transpose, sums):
    """The value at integer window coordinates (row, column) of the side x side pseudo-Gaussian
    square (0 outside it): concentric rectangles around the centre of each half, rectangle n
    weighted 1/n^2, the first half positive and the second negative, each half scaled to norm
    1/sqrt(2) so the square has unit L2 norm; `transpose` turns the halves by 90 degrees."""
    half = side // 2
    outer = tf.maximum(half // 2 + 1, side // 2 + 1), tf.maximum((side - half) // 2 + 1, side // 2 + 1)

    def raw(r, c, first):
        height = tf.where(first, half, side - half)
        local = tf.where(first, r, r - half)
        ring = tf.maximum(tf.abs(local - height // 2), tf.abs(c - side // 2))
        top = tf.where(first, outer[0], outer[1])
        return tf.gather(sums, top) - tf.gather(sums, tf.minimum(ring, top))

    grid_r, grid_c = tf.meshgrid(tf.range(side), tf.range(side), indexing="ij")
    norms = [tf.sqrt(tf.reduce_sum(tf.where(grid_r < half if first else grid_r >= half,
                                            tf.square(raw(grid_r, grid_c, grid_r < half)), 0.0)))
             for first in (True, False)]
    row, column = tf.where(transpose, column, row), tf.where(transpose, row, column)
    first = row < half
    inside = (row >= 0) & (row < side) & (column >= 0) & (column < side)
    value = raw(row, column, first) / tf.where(first, norms[0], -norms[1]) / np.sqrt(2.0)
    return tf.where(inside, value, 0.0)


def _linf_start(x, eps, rows, key, shape):
    _, width, channels = shape
    stripes = _signs(rows_random.uniform(rows, width * channels, key))
    return x + eps * tf.reshape(stripes, [-1, 1, width, channels])


def _l2_norm_rows(t):
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=[1, 2, 3]))


def _l2_start(x, eps, rows, key, shape):
    """A 5 x 5 grid of pseudo-Gaussian squares with a random sign per square and channel."""
    height, width, channels = shape
    side = max(height // 5, 1)
    offset_h, offset_w = (height - 5 * side) // 2, (width - 5 * side) // 2
    grid_h, grid_w = np.arange(height).reshape(1, -1, 1, 1), np.arange(width).reshape(1, 1, -1, 1)
    cell_h, cell_w = (grid_h - offset_h) // side, (grid_w - offset_w) // side
    inside = tf.constant((cell_h >= 0) & (cell_h < 5) & (cell_w >= 0) & (cell_w < 5))
    cell = np.clip(cell_h, 0, 4) * 5 + np.clip(cell_w, 0, 4)  # (1, H, W, 1) square index
    draw = rows_random.uniform(rows, 25 * channels, key)
    signs = tf.gather(tf.reshape(_signs(draw), [-1, 25, channels]), cell[0, :, :, 0], axis=1)  # (N, H, W, C)
    row, column = (grid_h - offset_h) % side, (grid_w - offset_w) % side
    sums = _inverse_square_sums(max(height, width) + 2)
    pattern = pseudo_gaussian(tf.constant(row, tf.int32), tf.constant(column, tf.int32), side, False, sums)
    delta = tf.where(inside, pattern * signs, 0.0)
    return x + eps * delta / tf.maximum(tf.reshape(_l2_norm_rows(delta), [-1, 1, 1, 1]), 1e-12)


def _run(model, settings: Square, x, labels, targets, eps, queries, seed, rows, run):
    """One Square run on a batch: the best point per sample, whether it fools, and its logits."""
    shape = x.shape[1:]
    height, width, channels = shape
    key = rows_random.start_key(seed, run) * 16_777_259
    linf = settings.norm == "linf"
    lower, upper = (tf.maximum(x - eps, 0.0), tf.minimum(x + eps, 1.0)) if linf else (0.0, 1.0)
    grid_h = tf.reshape(tf.range(height), [1, height, 1, 1])
    grid_w = tf.reshape(tf.range(width), [1, 1, width, 1])
    sums = _inverse_square_sums(max(height, width) + 2)

    def score(point):
        logits = tf.cast(model(point, training=False), tf.float32)
        return margin(logits, labels), logits

    def side_at(i):
        exact = tf.cast(tf.round(tf.sqrt(window_share(i, queries, settings.p_init) * height * width)), tf.int32)
        if linf:
            return tf.clip_by_value(exact, 1, min(height, width))
        odd = tf.maximum(exact, 3) + 1 - tf.maximum(exact, 3) % 2
        return tf.minimum(odd, min(height, width))

    def linf_candidate(best, side, draw):
        window = _window(grid_h, grid_w, _corner(draw[:, 0], height, side), _corner(draw[:, 1], width, side), side)
        change = 2.0 * eps * tf.reshape(_signs(draw[:, 2:2 + channels]), [-1, 1, 1, channels])
        return tf.where(window, best + change, best)

    def l2_candidate(best, side, draw):
        top, left = _corner(draw[:, 0], height, side), _corner(draw[:, 1], width, side)
        window = _window(grid_h, grid_w, top, left, side)
        emptied = _window(grid_h, grid_w, _corner(draw[:, 2], height, side), _corner(draw[:, 3], width, side), side)
        delta = best - x
        transpose = tf.reshape(draw[:, 4] > 0.5, [-1, 1, 1, 1])
        fresh = pseudo_gaussian(grid_h - top, grid_w - left, side, transpose, sums)
        fresh = fresh * tf.reshape(_signs(draw[:, 5:5 + channels]), [-1, 1, 1, channels])

        def window_norm(t):  # per row and channel, over the window
            return tf.sqrt(tf.reduce_sum(tf.square(tf.where(window, t, 0.0)), axis=[1, 2], keepdims=True))

        mass = tf.reshape(_l2_norm_rows(tf.where(window | emptied, delta, 0.0)), [-1, 1, 1, 1])
        spare = tf.maximum(eps ** 2 - tf.reshape(_l2_norm_rows(delta), [-1, 1, 1, 1]) ** 2, 0.0)
        proposal = fresh + delta / (window_norm(delta) + 1e-12)
        proposal = proposal / (window_norm(proposal) + 1e-12) * tf.sqrt(spare / channels + mass ** 2)
        moved = tf.where(window, proposal, tf.where(emptied, 0.0, delta))
        return x + eps * moved / tf.maximum(tf.reshape(_l2_norm_rows(moved), [-1, 1, 1, 1]), 1e-12)

    start = tf.clip_by_value((_linf_start if linf else _l2_start)(x, eps, rows, key, shape), lower, upper)
    start_margin, _ = score(start)

    def query(i, best, best_margin):
        draw = rows_random.uniform(rows, 5 + channels, key + tf.cast(i, tf.int64))
        candidate = (linf_candidate if linf else l2_candidate)(best, side_at(i), draw)
        candidate = tf.clip_by_value(candidate, lower, upper)
        candidate_margin, _ = score(candidate)
        improved = (best_margin > 0) & (candidate_margin < best_margin)
        return (i + 1, tf.where(tf.reshape(improved, [-1, 1, 1, 1]), candidate, best),
                tf.where(improved, candidate_margin, best_margin))

    _, best, best_margin = tf.while_loop(lambda i, _, m: (i < queries) & tf.reduce_any(m > 0), query,
                                         (tf.constant(1), start, start_margin))
    best_margin, logits = score(best)
    return {"x_adv": best, "success": best_margin <= 0, "loss": -best_margin, "logits": logits}


def _compiled(model: keras.Model, settings: Square):
    return graphs.compiled(model, ("square", settings.norm, settings.p_init),
                           lambda *args: _run(model, settings, *args), signature(model))


def square(model: keras.Model, x, y, settings: Square, *, seed: int = 0, first_index: int = 0, indices=None,
           batch_size: int = 256) -> AttackResult:
    """Runs the Square Attack on images `x` with true labels `y`; each restart attacks only the
    samples still robust. Draws depend on each image's index (first_index + i, or `indices`);
    `loss` in the result is minus the margin (positive once fooled)."""
    return run_attack(model, x, y, settings, _compiled, settings.queries, seed=seed, first_index=first_index,
                      indices=indices, batch_size=batch_size)
