"""The threat-model geometry attacks share: how a norm measures, steps, projects and starts.

Everything here is per sample over a batch (axis 0) and runs inside compiled graphs.
"""

from __future__ import annotations

import tensorflow as tf

_TINY = 1e-12


def _per_sample(reduce, t: tf.Tensor) -> tf.Tensor:
    """Reduces all but the batch axis, keeping dims so the result broadcasts back over t."""
    return reduce(t, axis=list(range(1, t.shape.rank)), keepdims=True)


def l2_norm(t: tf.Tensor) -> tf.Tensor:
    return tf.sqrt(_per_sample(tf.reduce_sum, tf.square(t)))


def l1_norm(t: tf.Tensor) -> tf.Tensor:
    return _per_sample(tf.reduce_sum, tf.abs(t))


def linf_norm(t: tf.Tensor) -> tf.Tensor:
    return _per_sample(tf.reduce_max, tf.abs(t))


class Norm:
    """An Lp threat model: distances, the steepest-ascent step, the projection, random starts."""

    name: str
    steepest_scaling: str  # the gradient scaling that is steepest ascent for this norm

    def size(self, delta: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def project(self, delta: tf.Tensor, eps) -> tf.Tensor:
        raise NotImplementedError

    def random_start(self, shape, eps, seed) -> tf.Tensor:
        raise NotImplementedError

    def box(self, x0, eps, lo, hi):
        """Per-pixel bounds equal to the ball within [lo, hi], where the ball is a box; else None."""
        return None


class Linf(Norm):
    name, steepest_scaling = "linf", "sign"

    def size(self, delta):
        return linf_norm(delta)

    def project(self, delta, eps):
        return tf.clip_by_value(delta, -eps, eps)

    def random_start(self, shape, eps, seed):
        return tf.random.stateless_uniform(shape, seed, -1.0, 1.0) * eps

    def box(self, x0, eps, lo, hi):
        return tf.maximum(x0 - eps, lo), tf.minimum(x0 + eps, hi)


class L2(Norm):
    name, steepest_scaling = "l2", "l2"

    def size(self, delta):
        return l2_norm(delta)

    def project(self, delta, eps):
        return delta * tf.minimum(1.0, eps / tf.maximum(l2_norm(delta), _TINY))

    def random_start(self, shape, eps, seed):
        """Uniform in the ball: a Gaussian direction and radius eps * u^(1/d)."""
        direction = tf.random.stateless_normal(shape, seed)
        direction /= tf.maximum(l2_norm(direction), _TINY)
        dims = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
        u = tf.random.stateless_uniform(tf.concat([shape[:1], tf.ones_like(shape[1:])], 0), seed + 1)
        return direction * eps * tf.pow(u, 1.0 / dims)


NORMS: dict[str, Norm] = {"linf": Linf(), "l2": L2()}


def _sign(grad, size):
    return size * tf.sign(grad)


def _unit_l2(grad, size):
    return size * grad / tf.maximum(l2_norm(grad), _TINY)


def _unit_max(grad, size):
    return size * grad / tf.maximum(linf_norm(grad), _TINY)


def _raw(grad, size):
    return size * grad


# The gradient scalings of the course assignment: each maps a gradient to a step of a given size.
SCALINGS = {"sign": _sign, "l2": _unit_l2, "max": _unit_max, "raw": _raw}
# The norm in which a scaling's step has exactly the step size (None: unbounded, "raw").
SCALING_NORM = {"sign": "linf", "l2": "l2", "max": "linf", "raw": None}
