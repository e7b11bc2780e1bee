"""Unrestricted adversarial examples: the latent search, the GAN training modes, the augmentation study."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from advcore import models
from advcore.generative import acgan, study, unrestricted
from advcore.storage.runs import Run
from advcore.training.config import ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_GAN = ROOT / "assets" / "generators" / "fashion_mnist"
STANDARD = ROOT / "assets" / "models" / "standard" / "model.keras"


@pytest.fixture(scope="module")
def gan():
    return acgan.load(BUNDLED_GAN)


@pytest.fixture(scope="module")
def classifier():
    return models.load(STANDARD)


def test_the_attack_loss_is_the_smallest_cross_entropy_toward_another_class():
    logits = tf.constant([[2.0, 1.0, -1.0], [0.0, 3.0, 1.0]])
    source = tf.constant([0, 1])
    untargeted = unrestricted._attack_loss(logits, source, tf.constant([-1, -1])).numpy()
    targeted = unrestricted._attack_loss(logits, source, tf.constant([2, 0])).numpy()
    ce = tf.nn.log_softmax(logits).numpy() * -1
    np.testing.assert_allclose(untargeted, [min(ce[0, 1], ce[0, 2]), min(ce[1, 0], ce[1, 2])], rtol=1e-6)
    np.testing.assert_allclose(targeted, [ce[0, 2], ce[1, 0]], rtol=1e-6)


def test_the_latent_attack_fools_the_classifier_while_the_gan_keeps_the_class(gan, classifier):
    source = np.arange(30) % 10
    result = unrestricted.attack(gan, classifier, source, settings=unrestricted.LatentAttack(steps=100), seed=3)
    assert result.success_rate >= 0.8
    # success as the seed defines it, recomputed from the returned images by the models themselves
    predictions = classifier(result.adversarial, training=False).numpy().argmax(-1)
    aux = gan.aux_logits(result.adversarial).argmax(-1)
    np.testing.assert_array_equal(result.success, (predictions != source) & (aux == source))
    assert np.all(aux[result.success] == source[result.success])
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    assert np.mean(result.clean_predictions == source) > 0.6  # the starting samples were mostly right


def test_a_targeted_search_reaches_its_target(gan, classifier):
    source, target = np.zeros(12, np.int32), np.full(12, 6)  # T-shirt to shirt
    result = unrestricted.attack(gan, classifier, source, target=target,
                                 settings=unrestricted.LatentAttack(steps=150), seed=1)
    assert result.success_rate >= 0.7
    assert np.all(result.predictions[result.success] == 6)


def test_without_pixel_noise_every_example_is_a_generator_image(gan, classifier):
    """noise_bound 0: the examples lie on the generator's image manifold, at distance 0 from G(z)."""
    settings = unrestricted.LatentAttack(steps=20, noise_bound=0.0, z_weight=0.0, aux_weight=0.0,
                                         gradient_noise=0.0)
    source = np.array([1, 7], np.int32)
    z0 = gan.latents(2, 0)
    result = unrestricted.attack(gan, classifier, source, z0=z0, settings=settings)
    # with no noise and no penalties, z moves by SGD on the attack loss alone: replay it independently
    z = tf.Variable(z0)
    for _ in range(20):
        with tf.GradientTape() as tape:
            logits = classifier(gan.generator([tf.convert_to_tensor(z), tf.constant(source)], training=False),
                                training=False)
            loss = tf.reduce_sum(unrestricted._attack_loss(logits, source, tf.constant([-1, -1])))
        z.assign_sub(0.1 * tape.gradient(loss, z))
    expected = gan.generate(z.numpy(), source)
    unfooled = ~result.success
    np.testing.assert_allclose(result.adversarial[unfooled], expected[unfooled], atol=1e-4)


def test_every_batch_starts_from_fresh_latents(gan, classifier):
    """The seed reused one set of latents for every batch, so its samples looked alike."""
    result = unrestricted.attack(gan, classifier, np.full(8, 4), settings=unrestricted.LatentAttack(steps=1),
                                 batch_size=4, seed=0)
    first, second = result.clean[:4], result.clean[4:]
    assert np.abs(first - second).reshape(4, -1).max(axis=1).min() > 0.05
    again = unrestricted.attack(gan, classifier, np.full(8, 4), settings=unrestricted.LatentAttack(steps=1),
                                batch_size=4, seed=1)
    assert np.abs(again.clean - result.clean).max() > 0.05


@pytest.mark.parametrize("call, message", [
    (dict(source=[10]), "source classes must lie in 0..9"),
    (dict(source=[1], target=[1]), "must differ from its source"),
    (dict(source=[1], target=[12]), "target classes must lie"),
    (dict(source=[]), "no source classes"),
    (dict(source=[1, 2], z0=np.zeros((3, 128), np.float32)), "z0 must have shape"),
])
def test_bad_requests_are_refused_clearly(gan, classifier, call, message):
    with pytest.raises(ValueError, match=message):
        unrestricted.attack(gan, classifier, **call)


def test_latent_settings_are_validated():
    with pytest.raises(ValueError, match="steps: must be >= 1"):
        unrestricted.LatentAttack(steps=0)
    with pytest.raises(ValueError, match="noise_bound"):
        unrestricted.LatentAttack(noise_bound=-0.1)


# ----------------------------------------------------------------------------- training modes and the study

def test_gan_methods_need_a_generator_and_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="generator: the unrestricted method needs a trained GAN"):
        TrainConfig.from_dict({"mode": "split", "attack": {"method": "unrestricted"}})
    with pytest.raises(ConfigError, match="generator: validation.gan_size needs a trained GAN"):
        TrainConfig.from_dict({"mode": "vanilla", "validation": {"gan_size": 10}})
    with pytest.raises(ConfigError, match="generator: no generator.keras in"):
        TrainConfig.from_dict({"mode": "split", "attack": {"method": "gan"}, "generator": str(tmp_path)})
    with pytest.raises(ConfigError, match="steps: fgsm takes one step"):
        TrainConfig.from_dict({"attack": {"method": "fgsm", "steps": 5}})


def test_the_study_arms_differ_only_in_their_augmentation():
    base = TrainConfig.from_dict({"name": "s", "generator": str(BUNDLED_GAN), "attack": {"eps": 0.08, "steps": 12},
                                  "mix": {"weight": 0.3, "fraction": 0.5}, "schedule": {"epochs": 4}})
    arms = study.arm_configs(base, str(BUNDLED_GAN))
    assert list(arms) == list(study.ARMS)
    assert arms["none"].mode == "vanilla"
    assert (arms["fgsm"].attack.method, arms["fgsm"].attack.eps, arms["fgsm"].attack.eps_min) == ("ll_fgsm", 0.08, 1e-4)
    assert arms["gan"].attack.method == "gan"
    assert (arms["unrestricted"].attack.method, arms["unrestricted"].attack.steps) == ("unrestricted", 12)
    for arm in arms.values():
        assert arm.validation.eps == 0.08 and arm.schedule.epochs == 4 and arm.generator == str(BUNDLED_GAN)
        assert (arm.mix.weight, arm.mix.fraction, arm.seed, arm.model) == (0.3, 0.5, base.seed, base.model)


def test_the_study_command_trains_four_runs_and_tabulates_them(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "advcore", "study", "--generator", str(BUNDLED_GAN), "--runs-dir", str(tmp_path),
         "--name", "tiny", "--train-size", "512", "--validation-size", "200", "--robust-val-size", "50",
         "--epochs", "1", "--gan-check-size", "20", "--gan-check-steps", "20", "--attack-steps", "3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [record] = study.list_studies(tmp_path)
    table = study.table(record, tmp_path)
    assert list(table["arm"]) == list(study.ARMS) and set(table["status"]) == {"finished"}
    for column in ("clean accuracy", "robust accuracy", "GAN-sample accuracy", "unrestricted accuracy"):
        assert table[column].between(0, 1).all(), column
    for arm, run_id in record["runs"].items():
        history = Run.open(run_id, tmp_path).history()
        assert table.set_index("arm").loc[arm, "clean accuracy"] == pytest.approx(history["val_accuracy"].iloc[-1])
    assert "unrestricted accuracy" in done.stdout


def test_a_study_without_a_gan_or_a_gan_run_without_data_is_refused(tmp_path, capsys):
    from advcore.cli.main import main

    assert main(["study", "--runs-dir", str(tmp_path), "--epochs", "1"]) == 2
    assert "a study needs --generator" in capsys.readouterr().err
    assert main(["train-gan", "--runs-dir", str(tmp_path), "--train-size", "100", "--epochs", "1"]) == 2
    assert "fewer than one step's 5 x 64" in capsys.readouterr().err
    assert main(["train", "--runs-dir", str(tmp_path), "--attack", "gan", "--mode", "split",
                 "--generator", str(tmp_path)]) == 2
    assert "generator: no generator.keras in" in capsys.readouterr().err
