"""The per-sample losses of adversarial examples: cross-entropy (Madry et al.), TRADES, MART; and
the consistency of noisy copies (training for randomized smoothing).

Each takes the logits of the clean images and of their adversarial examples (TRADES and MART need
both; cross-entropy ignores the clean ones) and returns one loss per pair, in float32, so the
trainer can weight and mix them with clean examples.
"""

from __future__ import annotations

import tensorflow as tf

from advcore.attacks.objectives import kl_divergence

PROBABILITY_FLOOR = 1e-12  # keeps MART's log(1 - max other probability) finite at saturation


def cross_entropy(logits, labels):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.cast(logits, tf.float32))


def trades(clean_logits, adversarial_logits, labels, beta: float):
    """CE(f(x), y) + beta KL(f(x) || f(x')) (Zhang et al. 2019)."""
    return cross_entropy(clean_logits, labels) + beta * kl_divergence(clean_logits, adversarial_logits)


def mart(clean_logits, adversarial_logits, labels, beta: float):
    """Boosted CE on x', -log p_y(x') - log(1 - max_{k != y} p_k(x')), plus beta KL(f(x) || f(x'))
    weighted by 1 - p_y(x), so misclassified clean images count more (Wang et al. 2020)."""
    adversarial = tf.nn.softmax(tf.cast(adversarial_logits, tf.float32))
    is_label = tf.one_hot(labels, tf.shape(adversarial)[-1], on_value=True, off_value=False)
    strongest_other = tf.reduce_max(tf.where(is_label, 0.0, adversarial), axis=-1)
    boosted = cross_entropy(adversarial_logits, labels) - tf.math.log(
        tf.maximum(1.0 - strongest_other, PROBABILITY_FLOOR))
    clean_label_probability = tf.gather(tf.nn.softmax(tf.cast(clean_logits, tf.float32)), labels, batch_dims=1)
    return boosted + beta * kl_divergence(clean_logits, adversarial_logits) * (1.0 - clean_label_probability)


def pair_loss(kind: str, clean_logits, adversarial_logits, labels, beta: float):
    """The objective `kind` per (clean, adversarial) pair."""
    if kind == "trades":
        return trades(clean_logits, adversarial_logits, labels, beta)
    if kind == "mart":
        return mart(clean_logits, adversarial_logits, labels, beta)
    return cross_entropy(adversarial_logits, labels)


def consistency(logits_of_copies: list) -> tuple:
    """Per image, over its noisy copies' logits: the mean KL(p_mean || p_copy) of each copy's softmax
    from their mean, and the mean's entropy (Jeong & Shin 2020's consistency and entropy terms)."""
    log_probabilities = [tf.nn.log_softmax(tf.cast(logits, tf.float32)) for logits in logits_of_copies]
    mean = tf.add_n([tf.exp(log_p) for log_p in log_probabilities]) / len(log_probabilities)
    log_mean = tf.math.log(tf.maximum(mean, PROBABILITY_FLOOR))
    kl = tf.add_n([tf.reduce_sum(mean * (log_mean - log_p), -1) for log_p in log_probabilities]) / len(
        log_probabilities)
    return kl, -tf.reduce_sum(mean * log_mean, -1)
