"""The class-conditional GAN: gradient penalty, AC-GAN training, GAN runs as real subprocesses."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from helpers import wait_for

from advcore.generative import acgan
from advcore.storage import data
from advcore.storage.runs import list_runs
from advcore.training.config import ConfigError, GanConfig

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_GAN = ROOT / "assets" / "generators" / "fashion_mnist"
TINY = ["--train-size", "640", "--batch-size", "32", "--critic-steps", "5", "--z-dim", "16", "--seed", "5"]


def linear_critic(shape, weights: np.ndarray) -> keras.Model:
    """score(x) = <w, x>: its input gradient is w everywhere, so the penalty is (||w|| - 1)^2."""
    inputs = keras.Input(shape)
    flat = keras.layers.Flatten()(inputs)
    score_layer = keras.layers.Dense(1, use_bias=False)
    score = score_layer(flat)
    logits = keras.layers.Dense(3)(flat)
    model = keras.Model(inputs, [score, logits])
    score_layer.set_weights([weights.reshape(-1, 1)])
    return model


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(4 * 4 * 1,)).astype(np.float32)
    critic = linear_critic((4, 4, 1), weights)
    real, fake = rng.uniform(size=(2, 8, 4, 4, 1)).astype(np.float32)
    penalty = acgan.gradient_penalty(critic, real, fake, tf.constant([1, 2], tf.int64))
    np.testing.assert_allclose(float(penalty), (np.linalg.norm(weights) - 1) ** 2, rtol=1e-5)


def test_gradient_penalty_is_taken_at_the_interpolates():
    """score(x) = ||x||^2 / 2 has gradient x: the penalty reveals the points it was taken at."""
    inputs = keras.Input((2, 2, 1))
    half_square = keras.ops.sum(keras.ops.square(inputs), axis=[1, 2, 3], keepdims=False)[:, None] / 2
    critic = keras.Model(inputs, [half_square, keras.layers.Flatten()(inputs)])
    real = np.zeros((64, 2, 2, 1), np.float32)
    fake = np.full((64, 2, 2, 1), 0.25, np.float32)  # ||fake|| = 0.5: the norm at share u is u / 2
    seed = tf.constant([7, 9], tf.int64)
    penalty = float(acgan.gradient_penalty(critic, real, fake, seed))
    share = tf.random.stateless_uniform([64, 1, 1, 1], seed).numpy().reshape(-1)
    np.testing.assert_allclose(penalty, np.mean((share / 2 - 1) ** 2), rtol=1e-5)


def test_the_penalty_pushes_critic_gradient_norms_toward_one():
    keras.utils.set_random_seed(0)
    critic = acgan.dcgan_critic((28, 28, 1), 10)
    rng = np.random.default_rng(1)
    real, fake = rng.uniform(size=(2, 32, 28, 28, 1)).astype(np.float32)
    optimizer = keras.optimizers.Adam(1e-3)

    def norms():
        x = tf.constant(real + 0.5 * (fake - real))
        with tf.GradientTape() as tape:
            tape.watch(x)
            score, _ = critic(x)
        return np.linalg.norm(tape.gradient(score, x).numpy().reshape(32, -1), axis=1)

    before = np.abs(norms() - 1).mean()
    for step in range(60):
        with tf.GradientTape() as tape:
            loss = acgan.gradient_penalty(critic, real, fake, tf.constant([0, step], tf.int64))
        optimizer.apply_gradients(zip(tape.gradient(loss, critic.trainable_variables), critic.trainable_variables))
    after = np.abs(norms() - 1).mean()
    assert before > 0.5 and after < 0.1, (before, after)


def test_a_few_gan_steps_lower_the_auxiliary_loss(fashion):
    config = GanConfig.from_dict({"z_dim": 16, "batch_size": 32, "critic_steps": 2, "seed": 0})
    x, y = fashion.train.x[:1280], fashion.train.y[:1280]
    keras.utils.set_random_seed(0)
    generator, critic = acgan.build(config, (28, 28, 1), 10)
    trainer = acgan.ACGANTrainer(generator, critic, config, 10)
    trainer.compile()

    def aux_loss():
        return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            y[:500], critic(x[:500], training=False)[1])))

    before = aux_loss()
    trainer.fit(acgan.real_batches(data.Split(x, y), config), steps_per_epoch=20, epochs=1, verbose=0)
    assert aux_loss() < 0.8 * before
    images = generator([np.zeros((3, 16), np.float32), np.array([0, 1, 2])], training=False).numpy()
    assert images.shape == (3, 28, 28, 1) and images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_both_architecture_pairs_fit_their_images(shape):
    config = GanConfig.from_dict({"z_dim": 8})
    generator, critic = acgan.build(config, shape, 10)
    images = generator([np.zeros((2, 8), np.float32), np.array([3, 4])], training=False)
    score, logits = critic(images)
    assert images.shape == (2, *shape) and score.shape == (2, 1) and logits.shape == (2, 10)
    assert acgan.resolve_architecture("auto", shape) == ("dcgan" if shape[0] == 28 else "resnet")


@pytest.mark.parametrize("content, message", [
    ({"critic_steps": 0}, r"critic_steps: must lie in \[1, 100\], got 0"),
    ({"beta_2": 1.0}, r"beta_2: must lie in \[0, 1\)"),
    ({"gradient_penalty": -1}, r"gradient_penalty: must lie in \[0, 1000\], got -1"),
    ({"architecture": "big"}, "architecture: must be one of"),
    ({"z": 3}, "z: unknown field"),
])
def test_gan_config_errors_name_their_field(content, message):
    with pytest.raises(ConfigError, match=message):
        GanConfig.from_dict(content)


def test_bundled_generator_loads_and_makes_each_class():
    gan = acgan.load(BUNDLED_GAN)
    assert gan.image_shape == (28, 28, 1) and gan.num_classes == 10 and gan.class_names[0] == "T-shirt/top"
    labels = np.repeat(np.arange(10), 20)
    aux = gan.aux_logits(gan.generate(gan.latents(200, 0), labels)).argmax(-1)
    assert np.mean(aux == labels) > 0.9


def test_a_folder_without_a_gan_is_refused_with_the_reason(tmp_path):
    with pytest.raises(acgan.GanError, match="not a GAN run"):
        acgan.load(tmp_path)


# ----------------------------------------------------------------------------- GAN runs as processes

def start(runs_dir, *args):
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = open(Path(runs_dir).parent / "out.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "advcore", "train-gan", "--runs-dir", str(runs_dir), *args],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def check_gan_run(run, epochs: int) -> pd.DataFrame:
    history = run.history()
    assert list(history["epoch"]) == list(range(1, epochs + 1))
    for epoch in range(1, epochs + 1):
        assert run.samples_path(epoch).is_file()
    acgan.load(run.path)
    return history


def test_a_killed_gan_run_resumes_to_the_uninterrupted_history(tmp_path):
    reference_dir, runs_dir = tmp_path / "reference" / "runs", tmp_path / "killed" / "runs"
    reference_dir.parent.mkdir()
    runs_dir.parent.mkdir()
    uninterrupted = start(reference_dir, *TINY, "--epochs", "2")  # beside the run to kill
    process = start(runs_dir, *TINY, "--epochs", "2")
    run = wait_for(lambda: list_runs(runs_dir), 60)[0]
    wait_for(lambda: len(run.history()) >= 1, 240, 0.05, describe=lambda: run.log_tail())
    process.kill()
    process.wait(timeout=60)
    assert run.status()["status"] == "failed"
    assert start(runs_dir, "--resume", run.id).wait(timeout=300) == 0, run.log_tail()
    resumed = check_gan_run(run, 2)
    assert uninterrupted.wait(timeout=300) == 0
    reference = check_gan_run(list_runs(reference_dir)[0], 2)
    assert run.status()["status"] == "finished" and "resuming" in run.log_tail(200)
    for column in ("critic_loss", "generator_loss", "aux_loss_real", "aux_accuracy_fake"):
        np.testing.assert_allclose(resumed[column], reference[column], rtol=1e-3, atol=1e-4, err_msg=column)


def test_a_stopped_gan_run_keeps_its_epochs_and_continues(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.parent.mkdir(exist_ok=True)
    process = start(runs_dir, *TINY, "--epochs", "until-stopped")
    run = wait_for(lambda: list_runs(runs_dir), 60)[0]
    wait_for(lambda: len(run.history()) >= 2, 240, 0.05, describe=lambda: run.log_tail())
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0, run.log_tail()
    assert run.status()["status"] == "stopped"
    before = check_gan_run(run, len(run.history()))
    process = start(runs_dir, "--resume", run.id)
    wait_for(lambda: len(run.history()) >= len(before) + 1, 240, 0.05, describe=lambda: run.log_tail())
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 0, run.log_tail()
    after = check_gan_run(run, len(run.history()))
    pd.testing.assert_frame_equal(after.iloc[:len(before)], before)


def test_a_gan_run_trains_on_two_devices(tmp_path):
    runs_dir = tmp_path / "runs"
    process = start(runs_dir, *TINY, "--epochs", "1", "--cpu-devices", "2", "--strategy", "mirrored")
    assert process.wait(timeout=300) == 0
    run = list_runs(runs_dir)[0]
    check_gan_run(run, 1)
    assert "2 replicas" in run.status()["device"], run.status()["device"]
