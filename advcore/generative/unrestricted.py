"""Unrestricted adversarial examples (seed 001): search the GAN's latent space, not pixel space.

Starting from a fresh latent z0 of a source class s, SGD on z (and on an optional pixel noise n,
|n| <= noise_bound) minimises, per sample,

    attack term:  min over k != s of CE(f(x), k)   (untargeted)   or   CE(f(x), t)   (toward t)
    + z_weight   * mean_j max((z_j - z0_j)^2 - z_radius, 0)   (stay near the start)
    + aux_weight * CE(aux(x), s)                                (still looks like s to the GAN)

with x = clip(G(z, s) + n, 0, 1), f the target classifier and aux the critic's class head. Gaussian
noise of variance eta / (1 + t)^0.55 is added to z's gradient at step t (annealed gradient noise), so
early steps explore and late ones settle. A sample succeeds when f is wrong (or says t) while aux
still says s; each sample keeps its latest successful iterate, so later steps cannot undo a success.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from advcore import graphs
from advcore.generative.acgan import ConditionalGan

UNTARGETED = -1  # a target of -1: any class but the source


@dataclasses.dataclass(frozen=True)
class LatentAttack:
    steps: int = 500
    learning_rate: float = 0.1
    noise_bound: float = 0.1  # Linf bound of the pixel noise added to G(z, s); 0: latent only
    z_radius: float = 0.01  # squared distance per latent coordinate allowed without penalty
    z_weight: float = 0.1
    aux_weight: float = 0.1
    gradient_noise: float = 0.01  # eta: variance of the gradient noise at step 0

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps: must be >= 1, got {self.steps}")
        for name in ("learning_rate", "noise_bound", "z_radius", "z_weight", "aux_weight", "gradient_noise"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name}: must be a finite number >= 0, got {value}")
        if self.learning_rate == 0:
            raise ValueError("learning_rate: must be > 0")


@dataclasses.dataclass
class UnrestrictedResult:
    clean: np.ndarray  # G(z0, s): the starting images
    adversarial: np.ndarray
    source: np.ndarray
    target: np.ndarray  # -1 where untargeted
    clean_predictions: np.ndarray  # the classifier on the starting images
    predictions: np.ndarray  # the classifier on the adversarial images
    aux_predictions: np.ndarray  # the GAN's auxiliary classifier on the adversarial images
    success: np.ndarray
    z_distance: np.ndarray  # RMS over coordinates of z - z0
    seconds: float

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.success)) if len(self.success) else float("nan")

    @property
    def accuracy(self) -> float:
        """The classifier's accuracy on the examples: the share of samples the search did not fool."""
        return 1.0 - self.success_rate


def _attack_loss(logits, source, target):
    """Per sample: CE toward the target, or the smallest CE toward any class but the source."""
    log_norm = tf.reduce_logsumexp(logits, axis=-1)
    others = tf.where(tf.one_hot(source, tf.shape(logits)[-1]) > 0, tf.cast(-np.inf, logits.dtype), logits)
    untargeted = log_norm - tf.reduce_max(others, axis=-1)
    targeted = log_norm - tf.gather(logits, tf.maximum(target, 0), batch_dims=1)
    return tf.where(target >= 0, targeted, untargeted)


def _fooled(logits, aux_logits, source, target):
    predicted = tf.argmax(logits, -1, output_type=tf.int32)
    wrong = tf.where(target >= 0, tf.equal(predicted, target), tf.not_equal(predicted, source))
    return wrong & tf.equal(tf.argmax(aux_logits, -1, output_type=tf.int32), source)


def latent_search(generator: keras.Model, critic: keras.Model, classifier: keras.Model, z0, source, target,
                  settings: LatentAttack, seed):
    """The search in graph form (usable inside a training step): returns the adversarial images and
    whether each succeeded. All models run in inference mode; no gradient reaches their weights."""
    z0 = tf.stop_gradient(tf.cast(z0, tf.float32))
    bound = settings.noise_bound

    def images(z, noise):
        return tf.clip_by_value(generator([z, source], training=False) + noise, 0.0, 1.0)

    def step(t, z, noise, best, found):
        with tf.GradientTape() as tape:
            tape.watch([z, noise])
            x = images(z, noise)
            logits = tf.cast(classifier(x, training=False), tf.float32)
            aux_logits = tf.cast(critic(x, training=False)[1], tf.float32)
            drift = tf.reduce_mean(tf.nn.relu(tf.square(z - z0) - settings.z_radius), axis=-1)
            aux = tf.nn.sparse_softmax_cross_entropy_with_logits(source, aux_logits)
            loss = tf.reduce_sum(_attack_loss(logits, source, target) + settings.z_weight * drift
                                 + settings.aux_weight * aux)
        fooled = _fooled(logits, aux_logits, source, target)
        best = tf.where(fooled[:, None, None, None], x, best)
        found = found | fooled
        grad_z, grad_noise = tape.gradient(loss, [z, noise])
        deviation = tf.sqrt(settings.gradient_noise / tf.pow(1.0 + tf.cast(t, tf.float32), 0.55))
        grad_z += deviation * tf.random.stateless_normal(tf.shape(z), tf.stack([seed[0], seed[1] + tf.cast(t, tf.int64)]))
        z = z - settings.learning_rate * grad_z
        noise = tf.clip_by_value(noise - settings.learning_rate * grad_noise, -bound, bound)
        return t + 1, z, noise, best, found

    start = images(z0, tf.zeros_like(generator([z0, source], training=False)))
    noise0 = tf.zeros_like(start)
    found0 = tf.zeros_like(source, tf.bool)
    _, z, noise, best, found = tf.while_loop(
        lambda t, *_: t < settings.steps, step, (tf.constant(0), z0, noise0, start, found0))
    last = images(z, noise)
    logits = classifier(last, training=False)
    fooled_last = _fooled(tf.cast(logits, tf.float32), tf.cast(critic(last, training=False)[1], tf.float32),
                          source, target)
    adversarial = tf.where((fooled_last | ~found)[:, None, None, None], last, best)
    return tf.stop_gradient(start), tf.stop_gradient(adversarial), found | fooled_last, z


def _compiled_search(gan: ConditionalGan, classifier: keras.Model, settings: LatentAttack):
    def search(z0, source, target, seed):
        return latent_search(gan.generator, gan.critic, classifier, z0, source, target, settings, seed)

    signature = [tf.TensorSpec([None, gan.z_dim], tf.float32), tf.TensorSpec([None], tf.int32),
                 tf.TensorSpec([None], tf.int32), tf.TensorSpec([2], tf.int64)]
    return graphs.compiled(classifier, ("latent-search", gan.generator, gan.critic, settings), search, signature)


def attack(gan: ConditionalGan, classifier: keras.Model, source, *, target=None, settings: LatentAttack | None = None,
           z0: np.ndarray | None = None, seed: int = 0, batch_size: int = 256) -> UnrestrictedResult:
    """Unrestricted adversarial examples of the given source classes, from fresh latents (drawn from
    `seed` unless given): every batch starts from latents of its own."""
    settings = settings or LatentAttack()
    source = np.asarray(source, np.int32).reshape(-1)
    if not len(source):
        raise ValueError("no source classes given: nothing to attack")
    if (source.min() < 0 or source.max() >= gan.num_classes):
        raise ValueError(f"source classes must lie in 0..{gan.num_classes - 1}")
    target = np.full_like(source, UNTARGETED) if target is None else np.broadcast_to(
        np.asarray(target, np.int32), source.shape).copy()
    if np.any((target >= gan.num_classes) | (target < UNTARGETED)):
        raise ValueError(f"target classes must lie in 0..{gan.num_classes - 1} (or -1: untargeted)")
    if np.any(target == source):
        raise ValueError("a target class must differ from its source class")
    z0 = gan.latents(len(source), seed) if z0 is None else np.asarray(z0, np.float32)
    if z0.shape != (len(source), gan.z_dim):
        raise ValueError(f"z0 must have shape ({len(source)}, {gan.z_dim}), got {z0.shape}")
    search = _compiled_search(gan, classifier, settings)
    started = time.perf_counter()
    parts = []
    for i in range(0, len(source), batch_size):
        part = slice(i, i + batch_size)
        clean, adversarial, success, z = search(tf.constant(z0[part]), tf.constant(source[part]),
                                                tf.constant(target[part]), tf.constant([seed, i * 1_000_003], tf.int64))
        parts.append([np.asarray(clean), np.asarray(adversarial), np.asarray(success), np.asarray(z)])
    clean, adversarial, success, z = (np.concatenate(column) for column in zip(*parts))
    seconds = time.perf_counter() - started
    return UnrestrictedResult(
        clean=clean, adversarial=adversarial, source=source, target=target,
        clean_predictions=_predictions(classifier, clean, batch_size),
        predictions=_predictions(classifier, adversarial, batch_size),
        aux_predictions=np.argmax(gan.aux_logits(adversarial), -1),
        success=success, z_distance=np.sqrt(np.mean(np.square(z - z0), axis=-1)), seconds=seconds)


def _predictions(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([np.argmax(np.asarray(model(x[i:i + batch_size], training=False)), -1)
                           for i in range(0, len(x), batch_size)])
