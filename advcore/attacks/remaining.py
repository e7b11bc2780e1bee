"""Attack runs on the samples still robust: the host loop APGD, FAB-T and Square share.

Each run (a restart, or a target class) attacks only the images no earlier run has fooled, in
batches of the remaining images; per image the fooling point (else the highest-loss one) is kept.
Images misclassified clean count as fooled with no perturbation, as in `attacks.attack`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from advcore import graphs
from advcore.attacks import progress
from advcore.attacks.checks import checked_batch
from advcore.attacks.gradient import AttackResult
from advcore.attacks.spec import is_int, require

# (images, labels, targets, image indices, run index) -> x_adv, success, loss, logits per image
RunBatch = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], dict]


def clean_logits(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    forward = graphs.forward(model)
    return np.concatenate([np.asarray(forward(x[i:i + batch_size]), np.float32) for i in range(0, len(x), batch_size)])


def attack_remaining(model: keras.Model, x: np.ndarray, labels: np.ndarray, runs: Sequence[tuple[int, int]],
                     run_batch: RunBatch, *, indices: np.ndarray, batch_size: int) -> AttackResult:
    """`runs` are (target rank, run index): rank r aims at the r-th most likely clean class (0: no
    target); `indices` are the images' indices, which their random draws depend on."""
    logits = clean_logits(model, x, batch_size)
    ranked = np.argsort(-logits, axis=1, kind="stable")
    best = {"x_adv": x.copy(), "success": ranked[:, 0] != labels, "logits": logits,
            "loss": np.full(len(x), -np.inf, np.float32)}
    for run, (rank, run_index) in enumerate(runs):
        todo = np.flatnonzero(~best["success"])
        for first in range(0, len(todo), batch_size):
            rows = todo[first:first + batch_size]
            targets = ranked[rows, rank - 1] if rank else labels[rows]
            out = run_batch(x[rows], labels[rows], targets, indices[rows], run_index)
            better = out["success"] | (out["loss"] > best["loss"][rows])
            for key in best:
                best[key][rows[better]] = out[key][better]
            progress.advance((run + (first + len(rows)) / len(todo)) / len(runs))
    delta = (best["x_adv"] - x).reshape(len(x), -1)
    return AttackResult(x_adv=best["x_adv"], success=best["success"], loss=best["loss"],
                        linf=np.abs(delta).max(1, initial=0.0), l2=np.sqrt(np.square(delta).sum(1)), labels=labels,
                        clean_predictions=ranked[:, 0], predictions=np.argmax(best["logits"], -1),
                        logits=best["logits"])


def image_indices(count: int, first_index: int, indices) -> np.ndarray:
    """Each image's index: `indices` if given (one per image), else first_index, first_index + 1, ..."""
    if indices is None:
        return first_index + np.arange(count, dtype=np.int64)
    indices = np.asarray(indices)
    if indices.shape != (count,) or not np.issubdtype(indices.dtype, np.integer) or (count and indices.min() < 0):
        raise ValueError(f"indices must be {count} non-negative integers, one per image, got shape {indices.shape}")
    return indices.astype(np.int64)


def signature(model: keras.Model) -> list[tf.TensorSpec]:
    """The inputs of a compiled run: images, labels, targets, eps, budget (steps or queries), seed,
    image indices, run index."""
    image = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    indices, count = tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int32)
    return [image, indices, indices, tf.TensorSpec([], tf.float32), count, tf.TensorSpec([], tf.int64), indices, count]


def run_attack(model: keras.Model, x, y, settings, compiled: Callable, budget: int, *, seed: int, first_index: int,
               indices, batch_size: int) -> AttackResult:
    """Checks the inputs, then runs `compiled(model, settings)` (a graph of `signature`) for each of
    `settings.runs()` on the images still robust."""
    require(is_int(batch_size) and batch_size >= 1, f"batch_size must be an integer >= 1, got {batch_size!r}")
    x, labels = checked_batch(model, x, y)
    settings.check_classes(int(model.outputs[0].shape[-1]))
    run = compiled(model, settings)

    def run_batch(images, batch_labels, targets, rows, run_index):
        out = run(images, batch_labels, targets, settings.eps, budget, seed, rows, run_index)
        return {key: value.numpy() for key, value in out.items()}

    return attack_remaining(model, x, labels, settings.runs(), run_batch,
                            indices=image_indices(len(x), first_index, indices), batch_size=batch_size)
