"""FAB-T (Croce & Hein, ICML 2020): the targeted fast adaptive boundary attack, minimal norm.

Each step linearises the decision boundary between the true class y and the target t at the
current point x1 (f = z_t - z_y and its input gradient g) and computes the smallest step onto that
hyperplane inside the [0, 1] box, both from x1 (d1) and from the original image x0 (d2). The new
point is the box-clipped mix ((x1 + eta d1)(1 - alpha) + (x0 + eta d2) alpha), alpha = |d1| /
(|d1| + |d2|) capped at alpha_max, which biases the search toward points close to x0. Whenever the
point is misclassified it is kept if it is the closest so far, and pulled back toward x0 by beta.
An image counts as broken when its closest misclassified point lies within eps. Targets are the
2nd, 3rd, ... most likely classes of the clean image, one run each.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import tensorflow as tf

from advcore import graphs
from advcore.attacks import progress
from advcore.attacks import rows as rows_random
from advcore.attacks.gradient import AttackResult
from advcore.attacks.norms import NORMS
from advcore.attacks.objectives import value_and_gradient
from advcore.attacks.remaining import run_attack, signature
from advcore.attacks.spec import is_int, is_number, require

_FAR = 1e10  # the distance of "no misclassified point found yet"


@dataclasses.dataclass(frozen=True)
class FabT:
    """What to run. Validated on creation, so bad settings fail before any work."""

    eps: float
    norm: str = "linf"
    steps: int = 100
    targets: int = 9  # one run toward each of the 2nd..(targets+1)-th most likely classes
    restarts: int = 1  # runs per target; the later ones start at a random point within eps / 2
    alpha_max: float = 0.1
    eta: float = 1.05  # extrapolation past the linearised boundary
    beta: float = 0.9  # pull back toward the image after a misclassified point

    def __post_init__(self):
        require(self.norm in NORMS, f"unknown norm {self.norm!r}: choose one of {', '.join(NORMS)}")
        require(is_number(self.eps) and math.isfinite(self.eps) and self.eps >= 0,
                f"eps must be a finite number >= 0, got {self.eps!r}")
        for name in ("steps", "targets", "restarts"):
            value = getattr(self, name)
            require(is_int(value) and value >= 1, f"{name} must be an integer >= 1, got {value!r}")
        require(0 <= self.alpha_max <= 1 and self.eta > 0 and 0 < self.beta < 1,
                f"FAB needs alpha_max in [0, 1], eta > 0 and beta in (0, 1), got {self.alpha_max}, {self.eta}, "
                f"{self.beta}")

    def check_classes(self, classes: int) -> None:
        require(classes > self.targets, f"FAB-T with {self.targets} target classes needs a model of at least "
                                        f"{self.targets + 1} classes, this one has {classes}")

    @property
    def cost(self) -> int:
        """Model evaluations per image at most (see `progress`): a step takes the gradients of two logits."""
        return self.steps * len(self.runs()) * (progress.FORWARD + 2 * progress.GRADIENT)

    def runs(self) -> list[tuple[int, int]]:
        """(target rank, run index) of each run: ranks 2..targets+1, `restarts` runs each."""
        return [(rank, i * self.restarts + restart)
                for i, rank in enumerate(range(2, self.targets + 2)) for restart in range(self.restarts)]


def boundary_step(points, w, c, norm: str):
    """Per row, the smallest step d (in `norm`) with w.d = c that keeps points + d in [0, 1].

    Rows are flattened (N, n). Moving along the constraint, coordinate i can go `room_i` before it
    meets the box; the step is d_i = s sign(w_i) min(tau e_i, room_i) with s = sign(c), e_i = 1 for
    Linf and |w_i| for L2, and tau the smallest value at which w.d reaches c, found exactly from the
    sorted breakpoints room_i / e_i. Where the box cannot reach the hyperplane every coordinate
    moves its whole room: the closest the box gets.
    """
    s = tf.sign(c)[:, None]
    u = tf.abs(w)
    room = tf.where(s * w > 0, 1.0 - points, points)
    rate = tf.ones_like(u) if norm == "linf" else u  # how fast coordinate i moves per unit of tau
    slope = u * rate  # d(w.d)/d tau while coordinate i is free
    moving = slope > 0
    breakpoint = tf.where(moving, room / tf.where(moving, rate, 1.0), tf.float32.max)
    descending, order = tf.math.top_k(-breakpoint, k=tf.shape(w)[1])  # the breakpoints in increasing order
    breakpoint, slope = -descending, tf.gather(slope, order, batch_dims=1)
    full = tf.where(slope > 0, breakpoint * slope, 0.0)  # a coordinate's share of w.d once it meets the box
    saturated = tf.cumsum(full, axis=1, exclusive=True)  # from coordinates met before each breakpoint
    free = tf.cumsum(slope, axis=1, reverse=True)  # slope of the coordinates still free there
    reached = saturated + tf.minimum(breakpoint, 1e30) * free  # w.d at each breakpoint, before saturating
    need = tf.abs(c)[:, None]
    segment = tf.minimum(tf.reduce_sum(tf.cast(reached < need, tf.int32), axis=1), tf.shape(w)[1] - 1)
    at = segment[:, None]
    tau = (need[:, 0] - tf.gather(saturated, at, batch_dims=1)[:, 0]) / tf.maximum(
        tf.gather(free, at, batch_dims=1)[:, 0], 1e-30)
    feasible = tf.reduce_sum(u * room, axis=1) >= need[:, 0]
    tau = tf.where(feasible, tau, tf.float32.max)[:, None]
    return s * tf.sign(w) * tf.minimum(tau * rate, room)


def _run(model, settings: FabT, x, labels, targets, eps, steps, seed, rows, run):
    """One FAB-T run: the closest misclassified point per sample (else the image) and its distance."""
    norm = NORMS[settings.norm]
    count = tf.shape(x)[0]

    def flat(t):
        return tf.reshape(t, [count, -1])

    def distance(t):
        return tf.reshape(norm.size(t), [-1])

    def size(d):
        return tf.maximum(tf.norm(d, ord=math.inf if settings.norm == "linf" else 2, axis=1, keepdims=True), 1e-8)

    def predicted(point):
        return tf.argmax(model(point, training=False), -1, output_type=labels.dtype)

    def random_start():  # a named function: AutoGraph cannot read the source of a lambda split over lines
        return rows_random.random_starts(settings.norm, x, rows, 0.5 * eps, seed, run, 0.0, 1.0)

    start = tf.cond(run > 0, random_start, lambda: x)

    def step(i, x1, best, best_distance):
        grad, _, f = value_and_gradient(model, x1, lambda logits: tf.gather(logits, targets, batch_dims=1)
                                        - tf.gather(logits, labels, batch_dims=1))
        g, x1_flat, x0_flat = flat(grad), flat(x1), flat(x)
        d1 = boundary_step(x1_flat, g, -f, settings.norm)
        d2 = boundary_step(x0_flat, g, -f + tf.reduce_sum(g * (x1_flat - x0_flat), axis=1), settings.norm)
        a1, a2 = size(d1), size(d2)
        alpha = tf.clip_by_value(a1 / (a1 + a2), 0.0, settings.alpha_max)
        moved = tf.clip_by_value((x1_flat + settings.eta * d1) * (1 - alpha) + (x0_flat + settings.eta * d2) * alpha,
                                 0.0, 1.0)
        moved = tf.reshape(moved, [-1, *x.shape[1:]])
        adversarial = predicted(moved) != labels
        gap = distance(moved - x)
        closer = adversarial & (gap < best_distance)
        back = tf.reshape(adversarial, [-1, 1, 1, 1])
        return (i + 1, tf.where(back, x + (moved - x) * settings.beta, moved),
                tf.where(tf.reshape(closer, [-1, 1, 1, 1]), moved, best), tf.where(closer, gap, best_distance))

    _, _, best, best_distance = tf.while_loop(lambda i, *_: i < steps, step,
                                              (tf.constant(0), start, x, tf.fill([count], _FAR)))
    success = best_distance <= eps * (1 + 1e-6)
    point = tf.where(tf.reshape(success, [-1, 1, 1, 1]), best, x)
    logits = tf.cast(model(point, training=False), tf.float32)
    return {"x_adv": point, "success": success & (tf.argmax(logits, -1, output_type=labels.dtype) != labels),
            "loss": -best_distance, "logits": logits}


def _compiled(model: keras.Model, settings: FabT):
    return graphs.compiled(model, ("fab-t", settings.norm, settings.alpha_max, settings.eta, settings.beta),
                           lambda *args: _run(model, settings, *args), signature(model))


def fab_t(model: keras.Model, x, y, settings: FabT, *, seed: int = 0, first_index: int = 0, indices=None,
          batch_size: int = 256) -> AttackResult:
    """Runs FAB-T on images `x` with true labels `y`, each run on the samples still robust; `loss`
    in the result is minus the distance of the closest misclassified point found."""
    return run_attack(model, x, y, settings, _compiled, settings.steps, seed=seed, first_index=first_index,
                      indices=indices, batch_size=batch_size)
