"""Training for randomized smoothing: noisy copies of every input, and Jeong & Shin's consistency
terms, against a hand-written loss; and a noise-trained model certifies far more than a plain one."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from advcore import models
from advcore.certification import smoothing
from advcore.storage.runs import Run
from advcore.training import objectives
from advcore.training.config import TrainConfig, problems
from advcore.training.runner import train
from advcore.training.trainer import AdversarialTrainer


def config(**noise) -> TrainConfig:
    return TrainConfig.from_dict({"name": "noise", "mode": "vanilla", "batch_size": 64,
                                  "data": {"train_size": 640, "validation_size": 200},
                                  "validation": {"robust_size": 0}, "schedule": {"kind": "constant", "epochs": 1},
                                  "noise": noise})


def test_the_consistency_terms_are_the_kl_to_the_mean_and_its_entropy():
    first, second = np.array([[2.0, 0.0, -1.0]]), np.array([[0.0, 1.0, 0.5]])
    p = [np.exp(z) / np.exp(z).sum() for z in (first, second)]
    mean = (p[0] + p[1]) / 2
    kl = np.mean([np.sum(mean * np.log(mean / q)) for q in p])
    found_kl, entropy = objectives.consistency([tf.constant(first, tf.float32), tf.constant(second, tf.float32)])
    assert found_kl.numpy()[0] == pytest.approx(kl, rel=1e-5)
    assert entropy.numpy()[0] == pytest.approx(-np.sum(mean * np.log(mean)), rel=1e-5)
    same, _ = objectives.consistency([tf.constant(first, tf.float32)] * 3)
    assert same.numpy()[0] == pytest.approx(0.0, abs=1e-6)


def test_a_noisy_step_descends_the_mean_loss_of_its_copies_plus_their_consistency(fashion):
    keras.utils.set_random_seed(2)
    classifier = models.small_cnn()
    trainer = AdversarialTrainer(classifier, config(sigma=0.5, copies=2, consistency=10.0, entropy=0.5), 10)
    trainer.compile(optimizer=keras.optimizers.SGD(1.0))  # a weight change of exactly -gradient
    x, y = tf.constant(fashion.train.x[:16]), tf.constant(fashion.train.y[:16])
    noisy = trainer._noisy_copies(x)  # the step's own noise (its seed is the optimizer's step 0)
    assert noisy.shape[0] == 32 and np.std((noisy - tf.tile(x, [2, 1, 1, 1])).numpy()) == pytest.approx(0.5, rel=0.05)
    before = [w.numpy().copy() for w in classifier.trainable_variables]
    with tf.GradientTape() as tape:
        logits = classifier(noisy, training=True)
        p = tf.nn.softmax(tf.reshape(logits, [2, 16, 10]))
        mean = tf.reduce_mean(p, 0)
        ce = -tf.reduce_mean(tf.math.log(tf.gather(tf.reshape(p, [32, 10]), tf.tile(y, [2]), batch_dims=1)))
        kl = tf.reduce_mean(tf.reduce_sum(mean * (tf.math.log(mean) - tf.math.log(p)), -1))
        entropy = tf.reduce_mean(-tf.reduce_sum(mean * tf.math.log(mean), -1))
        loss = ce + 10.0 * kl + 0.5 * entropy
    expected = tape.gradient(loss, classifier.trainable_variables)
    logs = trainer.train_on_batch(x, y, return_dict=True)
    assert logs["consistency"] == pytest.approx(float(10.0 * kl + 0.5 * entropy), rel=1e-4)
    for old, new, grad in zip(before, classifier.trainable_variables, expected):
        np.testing.assert_allclose(old - new.numpy(), grad.numpy(), atol=2e-5)


@pytest.mark.parametrize("noise, message", [
    ({"sigma": 0.0, "copies": 2}, "noise.sigma: noisy copies and their consistency need noise"),
    ({"sigma": 0.25, "consistency": 10.0}, "noise.copies: the consistency term compares noisy copies"),
    ({"sigma": 5.0}, "noise.sigma: must lie in [0, 4]"),
])
def test_bad_noise_settings_name_the_field(noise, message):
    assert message in problems(TrainConfig, config().to_dict() | {"noise": noise})[0]


def test_noise_training_buys_certified_robustness(tmp_path, fashion):
    """Same data, epochs and seed: at sigma 0.5, a model trained with noise and consistency
    certifies far more test images at radius 0.5 than one trained without noise."""
    certified = {}
    for name, noise in (("plain", {}), ("noisy", {"sigma": 0.5, "copies": 2, "consistency": 10.0})):
        run_config = TrainConfig.from_dict(config(**noise).to_dict() | {
            "data": {"train_size": 6000, "validation_size": 200}, "schedule": {"kind": "constant", "epochs": 3},
            "batch_size": 128})
        run = Run.create(run_config.to_dict(), tmp_path)
        train(run_config, run, echo=lambda line: None)
        history = run.history()
        assert history["consistency"].notna().all() == (name == "noisy")
        found = smoothing.certify(models.load(run.model_path), fashion.test.x[:100],
                                  smoothing.Smoothing(0.5, n0=50, n=500))
        certified[name] = smoothing.certified_accuracy(found, fashion.test.y[:100], [0.5])["certified_accuracy"][0]
    assert certified["noisy"] > certified["plain"] + 0.15, certified  # measured: 0.67 vs 0.36
