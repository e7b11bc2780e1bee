"""An attack on a few images with every iterate kept: what the Playground animates and plots.

`trace` runs the same steps as `attacks.attack` (same random starts, same updates, same choice of
result) and also returns each restart's path: the iterate, the logits and the objective after every
step. The result is therefore exactly what `attacks.attack` returns for the same seed, and the
path shows how it got there.
"""

from __future__ import annotations

import dataclasses
import keras
import numpy as np
import tensorflow as tf

from advcore import attacks
from advcore.attacks import AttackSpec


@dataclasses.dataclass(frozen=True)
class Trace:
    """Paths of shape (restarts, steps + 1, N, ...): index 0 is each restart's starting point."""

    iterates: np.ndarray  # images
    logits: np.ndarray
    objective: np.ndarray  # the value the attack maximises
    clean_logits: np.ndarray  # (N, classes)
    labels: np.ndarray  # (N,) the true labels, the targets, or the least-likely classes
    targeted: bool
    chosen: np.ndarray  # (N, 2): the (restart, step) of the result; (-1, 0) when the clean image is kept
    result: attacks.AttackResult

    def chosen_path(self, sample: int = 0) -> dict[str, np.ndarray]:
        """The restart the result came from, up to the result (the clean image alone if it was kept)."""
        restart, step = self.chosen[sample]
        if restart < 0:
            return {"iterates": self.result.x_adv[sample][None], "logits": self.clean_logits[sample][None]}
        return {"iterates": self.iterates[restart, :step + 1, sample],
                "logits": self.logits[restart, :step + 1, sample],
                "objective": self.objective[restart, :step + 1, sample]}


def _paths(model, spec: AttackSpec, x, labels, eps, step_size, steps, restarts, momentum, seed, first_row,
           pool_size):
    """Each restart's path; an attack loop of `attacks._compiled` (all rows are attacked at once)."""
    labels, clean = attacks._clean(model, spec, x, labels, pool_size)
    rows = first_row + tf.range(tf.shape(x, out_type=tf.int64)[0])
    box = attacks.NORMS[spec.norm].box(x, eps, spec.clip_min, spec.clip_max)
    paths = {key: tf.TensorArray(tf.float32, size=restarts) for key in ("iterates", "logits", "objective")}
    for restart in tf.range(restarts):
        x_adv = attacks._start_rows(spec, x, rows, eps, seed, restart)
        velocity = tf.zeros_like(x)
        steps_taken = {key: tf.TensorArray(tf.float32, size=steps + 1) for key in paths}
        for i in tf.range(steps + 1):
            grad, logits, value = attacks.input_gradient(model, spec, x_adv, labels)
            steps_taken = {key: steps_taken[key].write(i, tensor) for key, tensor in
                           (("iterates", x_adv), ("logits", tf.cast(logits, tf.float32)), ("objective", value))}
            if i < steps:
                x_adv, velocity = attacks._step(spec, x_adv, x, grad, velocity, eps, step_size, momentum, box)
        paths = {key: paths[key].write(restart, steps_taken[key].stack()) for key in paths}
    return labels, clean["logits"], {key: path.stack() for key, path in paths.items()}


def _choose(success: np.ndarray, objective: np.ndarray, clean_success: np.ndarray, clean_objective: np.ndarray,
            early_stop: bool) -> np.ndarray:
    """(restart, step) per sample by the rules of `attacks.attack`; restart -1 is the clean image.

    With early stop the clean image is kept if it already fools, else the first fooling iterate in
    (restart, step) order is taken. Otherwise, and for samples never fooled, the candidates are the
    clean image and then each restart's last iterate; a candidate replaces the best so far if it
    fools and that did not, or if both agree and its objective is higher.
    """
    last = success.shape[1] - 1
    chosen = np.zeros((success.shape[2], 2), np.int64)
    for n in range(success.shape[2]):
        fooling = np.argwhere(success[:, :, n]) if early_stop else np.empty((0, 2))
        if early_stop and clean_success[n]:
            chosen[n] = (-1, 0)
        elif len(fooling):
            chosen[n] = fooling[0]
        else:
            best, best_success, best_value = (-1, 0), clean_success[n], clean_objective[n]
            for restart in range(success.shape[0]):
                new_success, new_value = success[restart, last, n], objective[restart, last, n]
                if (new_success and not best_success) or (new_success == best_success and new_value > best_value):
                    best, best_success, best_value = (restart, last), new_success, new_value
            chosen[n] = best
    return chosen


def trace(model: keras.Model, x, y, spec: AttackSpec, *, target=None, seed: int = 0, first_index: int = 0) -> Trace:
    """Runs `spec` on a few images (N small: every iterate is kept) and returns the paths and result.

    `seed` and `first_index` mean what they mean for `attacks.attack`, which gives the same result.
    """
    x, labels = attacks.checked_inputs(model, x, y, spec, target)
    found_labels, clean_logits, paths = attacks._compiled(model, spec, _paths)(
        x, labels, spec.eps, spec.effective_step_size, spec.steps, spec.restarts, spec.momentum, seed,
        first_index, len(x))
    found_labels, clean_logits = found_labels.numpy(), clean_logits.numpy()
    paths = {key: value.numpy() for key, value in paths.items()}
    success = _succeeds(paths["logits"], found_labels, spec.targeted)
    clean_success = _succeeds(clean_logits, found_labels, spec.targeted)
    clean_objective = _objective(clean_logits, found_labels, spec)
    chosen = _choose(success, paths["objective"], clean_success, clean_objective, spec.early_stop)
    samples = np.arange(len(x))
    picked = {key: np.where(
        (chosen[:, 0] < 0).reshape((-1,) + (1,) * (value.ndim - 3)), fallback,
        value[chosen[:, 0], chosen[:, 1], samples]) for (key, value), fallback in zip(
        paths.items(), (x, clean_logits, clean_objective))}
    delta = (picked["iterates"] - x).reshape(len(x), -1)
    result = attacks.AttackResult(
        x_adv=picked["iterates"], success=_succeeds(picked["logits"], found_labels, spec.targeted),
        loss=picked["objective"], linf=np.abs(delta).max(axis=1), l2=np.sqrt((delta ** 2).sum(axis=1)),
        labels=found_labels, clean_predictions=clean_logits.argmax(-1), predictions=picked["logits"].argmax(-1),
        logits=picked["logits"])
    return Trace(paths["iterates"], paths["logits"], paths["objective"], clean_logits, found_labels,
                 spec.targeted, chosen, result)


def _succeeds(logits: np.ndarray, labels: np.ndarray, targeted: bool) -> np.ndarray:
    predictions = logits.argmax(-1)
    return predictions == labels if targeted else predictions != labels


def _objective(logits: np.ndarray, labels: np.ndarray, spec: AttackSpec) -> np.ndarray:
    return attacks.objective(tf.constant(logits), tf.constant(labels), spec.loss, spec.targeted).numpy()
