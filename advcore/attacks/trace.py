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

from advcore.attacks import gradient
from advcore.attacks.checks import checked_inputs
from advcore.attacks.norms import NORMS
from advcore.attacks.objectives import input_gradient
from advcore.attacks.spec import AttackSpec


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
    result: gradient.AttackResult

    def chosen_path(self, sample: int = 0) -> dict[str, np.ndarray]:
        """The restart the result came from, up to the result (the clean image alone if it was kept)."""
        restart, step = self.chosen[sample]
        if restart < 0:
            return {"iterates": self.result.x_adv[sample][None], "logits": self.clean_logits[sample][None]}
        return {"iterates": self.iterates[restart, :step + 1, sample],
                "logits": self.logits[restart, :step + 1, sample],
                "objective": self.objective[restart, :step + 1, sample]}


_DTYPES = {"x": tf.float32, "logits": tf.float32, "value": tf.float32, "success": tf.bool}


def _paths(model, spec: AttackSpec, x, labels, eps, step_size, steps, restarts, momentum, seed, first_row,
           pool_size):
    """Each restart's path of candidates (`gradient._evaluated`: x, logits, value, success); an attack
    loop of `gradient._compiled`, attacking all rows at once."""
    labels, clean = gradient._clean(model, spec, x, labels, pool_size)
    rows = first_row + tf.range(tf.shape(x, out_type=tf.int64)[0])
    box = NORMS[spec.norm].box(x, eps, spec.clip_min, spec.clip_max)
    paths = {key: tf.TensorArray(dtype, size=restarts) for key, dtype in _DTYPES.items()}
    for restart in tf.range(restarts):
        x_adv = gradient._start_rows(spec, x, rows, eps, seed, restart)
        velocity = tf.zeros_like(x)
        taken = {key: tf.TensorArray(dtype, size=steps + 1) for key, dtype in _DTYPES.items()}
        for i in tf.range(steps):
            grad, logits, value = input_gradient(model, spec, x_adv, labels)
            taken = _write(taken, i, gradient._evaluated(model, spec, x_adv, labels, logits, value))
            x_adv, velocity = gradient._step(spec, x_adv, x, grad, velocity, eps, step_size, momentum, box)
        taken = _write(taken, steps, gradient._evaluated(model, spec, x_adv, labels))  # forward only
        paths = _write(paths, restart, {key: array.stack() for key, array in taken.items()})
    return labels, clean, {key: path.stack() for key, path in paths.items()}


def _write(arrays: dict, index, values: dict) -> dict:
    return {key: arrays[key].write(index, values[key]) for key in arrays}


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
        if early_stop:
            fooling = [(-1, 0)] if clean_success[n] else np.argwhere(success[:, :, n])
            if len(fooling):
                chosen[n] = fooling[0]
                continue
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
    x, labels = checked_inputs(model, x, y, spec, target)
    labels, clean, paths = gradient._compiled(model, spec, _paths)(
        x, labels, spec.eps, spec.effective_step_size, spec.steps, spec.restarts, spec.momentum, seed,
        first_index, len(x))
    labels = labels.numpy()
    clean, paths = ({key: value.numpy() for key, value in d.items()} for d in (clean, paths))
    chosen = _choose(paths["success"], paths["value"], clean["success"], clean["value"], spec.early_stop)
    restart, step, kept = chosen[:, 0], chosen[:, 1], chosen[:, 0] < 0

    def pick(key: str) -> np.ndarray:
        """Per sample, the chosen candidate's `key` (the clean image's where it was kept)."""
        value = paths[key][restart, step, np.arange(len(x))]
        return np.where(kept.reshape((-1,) + (1,) * (value.ndim - 1)), clean[key], value)

    x_adv, logits = pick("x"), pick("logits")
    delta = (x_adv - x).reshape(len(x), -1)
    result = gradient.AttackResult(
        x_adv=x_adv, success=pick("success"), loss=pick("value"), linf=np.abs(delta).max(axis=1),
        l2=np.sqrt((delta ** 2).sum(axis=1)), labels=labels, clean_predictions=clean["logits"].argmax(-1),
        predictions=logits.argmax(-1), logits=logits)
    return Trace(paths["x"], paths["logits"], paths["value"], clean["logits"], labels, spec.targeted, chosen, result)
