"""TRADES, MART and AWP against their formulas, and held-out validation with the best-epoch rule."""

import gzip
import math
import struct

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from advcore import models
from advcore.storage import data
from advcore.storage.runs import Run
from advcore.training import awp, objectives
from advcore.training.config import ConfigError, TrainConfig, upgraded
from advcore.training.runner import EpochControl, Recorder, StopRequest, best_epoch, datasets, train
from advcore.training.trainer import AdversarialTrainer


def config_of(**changes) -> TrainConfig:
    content = {"name": "t", "batch_size": 32, "data": {"train_size": 320, "validation_size": 100},
               "validation": {"robust_size": 50, "steps": 2}, "attack": {"method": "pgd", "steps": 2},
               "schedule": {"kind": "constant", "epochs": 1}}
    for key, value in changes.items():
        section, _, field = key.rpartition(".")
        (content.setdefault(section, {}) if section else content)[field] = value
    return TrainConfig.from_dict(content)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def cross_entropy(z, y):
    return -np.log(softmax(z)[np.arange(len(y)), y])


def kl(p_logits, q_logits):
    p, q = softmax(p_logits), softmax(q_logits)
    return (p * (np.log(p) - np.log(q))).sum(-1)


@pytest.fixture
def pair():
    """Clean and adversarial logits of a tiny linear model, labels, in float64 for the hand formulas."""
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(6, 4))
    x = rng.normal(size=(5, 6))
    x_adv = x + 0.3 * rng.normal(size=(5, 6))
    return x @ weights, x_adv @ weights, np.array([0, 1, 2, 3, 1])


def test_trades_loss_is_cross_entropy_plus_beta_kl(pair):
    clean, adversarial, y = pair
    got = objectives.trades(tf.constant(clean, tf.float32), tf.constant(adversarial, tf.float32), tf.constant(y), 6.0)
    np.testing.assert_allclose(got.numpy(), cross_entropy(clean, y) + 6.0 * kl(clean, adversarial), rtol=1e-5)
    assert kl(clean, adversarial).mean() > 0.1  # the KL term is exercised, not ~0


def test_mart_loss_matches_its_formula(pair):
    clean, adversarial, y = pair
    p_adv, p_clean = softmax(adversarial), softmax(clean)
    others = np.where(np.eye(4, dtype=bool)[y], -1.0, p_adv).max(-1)
    boosted = -np.log(p_adv[np.arange(5), y]) - np.log(1 - others)
    expected = boosted + 5.0 * kl(clean, adversarial) * (1 - p_clean[np.arange(5), y])
    got = objectives.mart(tf.constant(clean, tf.float32), tf.constant(adversarial, tf.float32), tf.constant(y), 5.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def _trainer(config: TrainConfig, learning_rate: float = 0.5):
    keras.utils.set_random_seed(4)
    classifier = models.small_cnn()
    trainer = AdversarialTrainer(classifier, config, steps_per_epoch=10)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate))
    trainer.adversarial_phase.assign(config.adversarial)
    return trainer, classifier


def test_trades_with_beta_zero_trains_exactly_like_clean_training(fashion):
    x, y = fashion.train.x[:64], fashion.train.y[:64]
    trades, trades_model = _trainer(config_of(**{"objective.kind": "trades", "objective.beta": 0.0}))
    clean, clean_model = _trainer(config_of(mode="vanilla"))
    weighted, weighted_model = _trainer(config_of(**{"objective.kind": "trades", "objective.beta": 6.0}))
    for start in (0, 32):  # step by step
        for trainer in (trades, clean, weighted):
            trainer.train_on_batch(x[start:start + 32], y[start:start + 32])
        for a, b in zip(trades_model.get_weights(), clean_model.get_weights()):
            np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(weighted_model.get_weights()[0], clean_model.get_weights()[0], atol=1e-4)


def test_trades_examples_raise_the_kl_within_the_ball(fashion):
    from advcore import attacks

    x = tf.constant(fashion.train.x[:64])
    trainer, classifier = _trainer(config_of(**{"objective.kind": "trades", "attack.steps": 5}))
    x_adv = trainer.adversarial_examples(x, tf.constant(fashion.train.y[:64]))
    assert float(tf.reduce_max(tf.abs(x_adv - x))) <= 0.1 + 1e-6
    assert 0 <= float(tf.reduce_min(x_adv)) and float(tf.reduce_max(x_adv)) <= 1
    clean = classifier(x, training=False)
    start = x + attacks.gradient.TRADES_START_SCALE * tf.random.stateless_normal(tf.shape(x), [0, 1])
    assert float(tf.reduce_mean(attacks.kl_divergence(clean, classifier(x_adv)))) > 10 * float(
        tf.reduce_mean(attacks.kl_divergence(clean, classifier(tf.clip_by_value(start, 0, 1)))))


def test_awp_offsets_have_the_asked_relative_size_per_kernel():
    rng = np.random.default_rng(0)
    weights = [tf.constant(rng.normal(size=shape), tf.float32) for shape in ((3, 3, 1, 4), (4,), (8, 5), (5,))]

    def gradient_at(shifted):  # a loss whose gradient turns as the weights move
        return [tf.sin(w) + 0.1 for w in shifted]

    for steps in (1, 3):
        moved = awp.offsets(gradient_at, weights, gamma=5e-3, steps=steps)
        for w, v in zip(weights, moved):
            if len(w.shape) >= 2:
                assert float(tf.norm(v)) == pytest.approx(5e-3 * float(tf.norm(w)), rel=1e-5)
            else:
                assert not np.any(v.numpy())  # biases stay
    one_step = awp.offsets(gradient_at, weights, gamma=5e-3, steps=1)[0]
    direction = tf.sin(weights[0]) + 0.1
    np.testing.assert_allclose(one_step.numpy(), 5e-3 * tf.norm(weights[0]) * direction / tf.norm(direction),
                               rtol=1e-5, atol=1e-9)


def test_awp_step_is_a_plain_step_with_the_gradient_at_the_perturbed_weights(fashion):
    """An independent computation: the gradient at w on the same adversarial examples gives v; a copy
    of the model at w + v gives the gradient the update must use; the update applies to w."""
    x, y = tf.constant(fashion.train.x[:32]), tf.constant(fashion.train.y[:32])
    gamma = 0.05  # large, so the perturbed gradient clearly differs from the plain one
    trainer, classifier = _trainer(config_of(**{"awp.enabled": True, "awp.gamma": gamma}), learning_rate=1.0)
    before = [w.numpy().copy() for w in classifier.trainable_variables]
    x_adv = trainer.adversarial_examples(x, y)  # the examples the step will make (same seed at step 0)

    def gradient(model):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x_adv, training=True)))
        return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]

    copy = keras.models.clone_model(classifier)
    copy.set_weights(classifier.get_weights())
    plain = gradient(copy)
    offsets = [gamma * np.linalg.norm(w) * g / np.linalg.norm(g) if w.ndim >= 2 else 0 * w
               for w, g in zip(before, plain)]
    copy.set_weights([w + v for w, v in zip(before, offsets)])
    perturbed = gradient(copy)
    trainer.train_on_batch(x, y)
    for old, new, g in zip(before, classifier.trainable_variables, perturbed):
        np.testing.assert_allclose(old - new.numpy(), g, atol=2e-5)
    assert not np.allclose(plain[0], perturbed[0], atol=1e-3)  # the perturbation mattered


def test_awp_leaves_the_weights_exactly_as_they_were(fashion):
    x, y = fashion.train.x[:32], fashion.train.y[:32]
    trainer, classifier = _trainer(config_of(**{"awp.enabled": True, "awp.steps": 2}), learning_rate=0.0)
    before = [w.numpy().copy() for w in classifier.trainable_variables]
    trainer.train_on_batch(x, y)
    for old, new in zip(before, classifier.trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())


@pytest.mark.parametrize("changes, message", [
    ({"objective.kind": "trades", "attack.method": "fgsm", "attack.steps": None},
     "attack.method: trades runs its own PGD"),
    ({"objective.kind": "mart", "mode": "vanilla"}, "objective.kind: mart is a loss on adversarial examples"),
    ({"objective.beta": -1.0}, "objective.beta"),
    ({"awp.enabled": True, "awp.gamma": 0.0}, "awp.gamma: must be > 0"),
    ({"awp.enabled": True, "lipschitz.enabled": True}, "awp.enabled: not combined with the Lipschitz penalty"),
    ({"validation.keep_best": True, "validation.robust_size": 0}, "validation.keep_best"),
    ({"validation.keep_best": True, "data.validation_size": 0}, "validation.keep_best"),
    ({"data.validation_size": -5}, r"data.validation_size: must lie in \[0, 10000000\], got -5"),
])
def test_bad_objective_settings_name_their_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        config_of(**changes)


def test_paired_objectives_refuse_generated_examples(tmp_path):
    (tmp_path / "generator.keras").touch()
    with pytest.raises(ConfigError, match="objective.kind: mart compares each image with its adversarial example"):
        config_of(**{"objective.kind": "mart", "attack.method": "gan", "attack.steps": None,
                     "generator": str(tmp_path)})


def test_old_configs_read_val_size_as_held_out_validation():
    content = {"data": {"val_size": 1000, "augment": "crop"}}
    assert TrainConfig.from_dict(content).data.validation_size == 1000
    current, (note,) = upgraded(content)
    assert current == {"data": {"validation_size": 1000, "augment": "crop"}}
    assert note.startswith("data.val_size (1000)") and "test split" in note and "training split" in note
    assert upgraded(current) == (current, [])
    with pytest.raises(ConfigError, match="data.val_size: give validation_size alone"):
        TrainConfig.from_dict({"data": {"val_size": 10, "validation_size": 20}})


def test_held_out_validation_is_disjoint_and_fixed_by_the_seed():
    split = data.Split(np.arange(50, dtype=np.float32).reshape(50, 1, 1, 1), np.arange(50))
    rest, held = data.hold_out(split, 10, seed=3)
    assert len(held) == 10 and len(rest) == 40
    assert set(held.y).isdisjoint(rest.y) and set(held.y) | set(rest.y) == set(range(50))
    assert np.array_equal(data.hold_out(split, 10, seed=3)[1].y, held.y)
    assert not np.array_equal(data.hold_out(split, 10, seed=4)[1].y, held.y)
    with pytest.raises(ValueError, match="cannot hold out 50"):
        data.hold_out(split, 50)


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def train_files_only(tmp_path):
    """A Fashion-MNIST folder with training files alone: 400 images, each carrying its index in two pixels."""
    count = 400
    images = np.random.default_rng(0).integers(0, 256, (count, 28, 28))
    images[:, 0, 0], images[:, 0, 1] = np.arange(count) % 256, np.arange(count) // 256
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte.gz", images)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(count) % 10)
    return tmp_path


def _indices(split: data.Split) -> set:
    pixels = np.rint(split.x[:, 0, :2, 0] * 255).astype(int)
    return set(pixels[:, 0] + 256 * pixels[:, 1])


def test_a_run_holds_validation_out_of_training_and_reads_no_test_file(train_files_only, tmp_path):
    config = config_of(**{"data.data_dir": str(train_files_only), "data.train_size": None,
                          "data.validation_size": 80, "validation.robust_size": 20})
    dataset, validation = datasets(config)
    assert dataset.source == str(train_files_only) and dataset.test is None
    assert _indices(dataset.train).isdisjoint(_indices(validation))
    assert len(_indices(dataset.train) | _indices(validation)) == 400
    assert not list((train_files_only / "fashion-mnist").glob("t10k*"))  # asking for the test split falls through
    run = Run.create(config.to_dict(), tmp_path / "runs")
    assert train(config, run, echo=lambda line: None) == "finished"
    assert run.status()["steps_per_epoch"] == math.ceil(320 / 32)  # trained on the 320 images left, no more


def test_best_epoch_is_the_first_highest_robust_accuracy():
    rows = [{"epoch": 1, "val_robust_accuracy": 0.3}, {"epoch": 2, "val_robust_accuracy": float("nan")},
            {"epoch": 3, "val_robust_accuracy": 0.5}, {"epoch": 4, "val_robust_accuracy": 0.5}]
    assert best_epoch(rows) == (3, 0.5)
    assert best_epoch([{"epoch": 1, "val_robust_accuracy": None}]) is None


def test_keep_best_keeps_the_model_of_the_best_epoch(tmp_path):
    """The run's model.keras follows the best validation robust accuracy; history and checkpoints stay whole."""
    config = config_of(**{"validation.keep_best": True})
    run = Run.create(config.to_dict(), tmp_path)
    trainer, classifier = _trainer(config)
    control = EpochControl(StopRequest(), steps_per_epoch=0, on_stop=None)
    recorder = Recorder(run, config, control, pd.DataFrame(), chief=True, echo=lambda line: None)
    recorder.set_model(trainer)
    start = classifier.get_weights()
    for epoch, robust in enumerate([0.30, 0.50, 0.40]):
        classifier.set_weights([w + epoch for w in start])  # a different model per epoch
        recorder.on_epoch_end(epoch, {"loss": 1.0, "accuracy": 0.5, "val_robust_accuracy": robust})
    saved = models.load(run.model_path).get_weights()
    for a, b in zip(saved, start):
        np.testing.assert_allclose(a, b + 1)  # epoch 2's weights
    assert run.status()["best_epoch"] == 2 and run.status()["best_val_robust_accuracy"] == 0.5
    assert list(run.history()["epoch"]) == [1, 2, 3] and run.checkpoints() == [1, 2, 3]


@pytest.mark.parametrize("changes", [{"objective.kind": "trades", "schedule.kind": "interleaved",
                                      "schedule.vanilla_epochs": 1, "schedule.adversarial_epochs": 1,
                                      "schedule.cycles": 1},
                                     {"objective.kind": "mart", "mode": "split", "awp.enabled": True,
                                      "validation.keep_best": True}])
def test_objectives_train_in_real_runs(tmp_path, changes):
    config = config_of(**changes)
    run = Run.create(config.to_dict(), tmp_path)
    assert train(config, run, echo=lambda line: None) == "finished"
    history = run.history()
    adversarial = history[history["phase"] == "adversarial"]
    assert (adversarial["kl"] > 0).all() and history.loc[history["phase"] == "vanilla", "kl"].isna().all()
    assert np.isfinite(history["loss"]).all()
    best = run.status().get("best_epoch")
    assert best is None if not config.validation.keep_best else best in list(history["epoch"])


def test_a_flag_sets_the_new_field_over_an_old_config_file(tmp_path, capsys):
    from advcore.cli.main import build_parser
    from advcore.cli.train_commands import TRAIN_OPTIONS, _config_content

    path = tmp_path / "old.json"
    path.write_text('{"data": {"val_size": 1000}}')
    args = build_parser().parse_args(["train", "--config", str(path), "--validation-size", "5000", "--awp",
                                      "--objective", "mart", "--beta", "4"])
    config = TrainConfig.from_dict(_config_content(args, TRAIN_OPTIONS))
    assert config.data.validation_size == 5000 and config.awp.enabled
    assert (config.objective.kind, config.objective.beta) == ("mart", 4.0)
    assert "note: data.val_size (1000) is read as data.validation_size" in capsys.readouterr().out
