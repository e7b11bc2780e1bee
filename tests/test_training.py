"""The training engine in-process: schedules, the adversarial step, robustness gained, configs, run ids."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from advcore import attacks, models
from advcore.evaluation import robustness
from advcore.storage.runs import Run, RunError, check_run_id
from advcore.training.config import ConfigError, TrainConfig, phase
from advcore.training.runner import train
from advcore.training.trainer import AdversarialTrainer


def tiny_config(**changes) -> TrainConfig:
    content = {"name": "t", "batch_size": 64, "data": {"train_size": 640, "validation_size": 200},
               "validation": {"robust_size": 100, "steps": 3}, "attack": {"method": "fgsm_rs"},
               "schedule": {"kind": "constant", "epochs": 1}}
    for key, value in changes.items():
        section, _, field = key.rpartition(".")
        (content.setdefault(section, {}) if section else content)[field] = value
    return TrainConfig.from_dict(content)


def test_interleaved_phases_follow_the_cycle():
    config = tiny_config(**{"schedule.kind": "interleaved", "schedule.vanilla_epochs": 10,
                            "schedule.adversarial_epochs": 3, "schedule.cycles": 2})
    phases = [phase(config, e) for e in range(26)]
    assert phases == (["vanilla"] * 10 + ["adversarial"] * 3) * 2
    warm = tiny_config(**{"schedule.kind": "warmup", "schedule.vanilla_epochs": 2, "schedule.epochs": 5})
    assert [phase(warm, e) for e in range(5)] == ["vanilla"] * 2 + ["adversarial"] * 3
    assert phase(tiny_config(mode="vanilla"), 3) == "vanilla"


def test_a_real_run_records_phases_in_order(tmp_path):
    config = tiny_config(**{"schedule.kind": "interleaved", "schedule.vanilla_epochs": 2,
                            "schedule.adversarial_epochs": 1, "schedule.cycles": 2})
    run = Run.create(config.to_dict(), tmp_path)
    assert train(config, run, echo=lambda line: None) == "finished"
    history = run.history()
    assert list(history["epoch"]) == [1, 2, 3, 4, 5, 6]
    assert list(history["phase"]) == ["vanilla", "vanilla", "adversarial"] * 2
    assert (history.loc[history["phase"] == "vanilla", "eps"] == 0).all()
    assert np.allclose(history.loc[history["phase"] == "adversarial", "eps"], 0.1)
    assert history["val_robust_accuracy"].between(0, 1).all()
    assert run.status()["status"] == "finished" and run.checkpoints() == [2, 3, 4, 5, 6]
    assert models.load(run.model_path).count_params() == models.small_cnn().count_params()


def test_a_folder_run_records_the_files_it_skips_per_split(tmp_path):
    from test_image_folder import presplit_with_damage

    folder = presplit_with_damage(tmp_path / "photos")
    config = tiny_config(**{"data.dataset": str(folder), "data.train_size": None, "data.validation_size": 2,
                            "data.image_size": 12, "batch_size": 4, "validation.robust_size": 2})
    run = Run.create(config.to_dict(), tmp_path / "runs")
    assert train(config, run, echo=lambda line: None) == "finished"
    skipped = {Path(path).name: (split, reason) for split, path, reason in run.skipped()}
    assert set(skipped) == {"empty.png", "cut.png"} and skipped["cut.png"][0] == "train"
    assert skipped["empty.png"] == ("test", "the file is empty")  # named before the test set is read
    assert "skipped" in run.log_path.read_text() and "empty.png (test): the file is empty" in run.log_path.read_text()


def _one_step_trainer(mode: str, fraction: float = 0.5, weight: float = 1.0):
    keras.utils.set_random_seed(1)
    config = tiny_config(mode=mode, **{"attack.method": "pgd", "attack.steps": 3, "mix.fraction": fraction,
                                       "mix.weight": weight})
    classifier = models.small_cnn()
    trainer = AdversarialTrainer(classifier, config, steps_per_epoch=10)
    trainer.compile(optimizer=keras.optimizers.SGD(1.0))  # a weight change of exactly -gradient
    trainer.adversarial_phase.assign(True)
    return trainer, classifier


@pytest.mark.parametrize("mode, fraction, weight", [("adversarial", 0.5, 1.0), ("double", 0.5, 0.3),
                                                    ("split", 0.5, 0.3)])
def test_adversarial_step_equals_training_on_precomputed_examples(fashion, mode, fraction, weight):
    """The step's gradient is the gradient on fixed adversarial examples: nothing flows through
    their creation. The same examples are made again from the same seed (optimizer step 0)."""
    x, y = tf.constant(fashion.train.x[:32]), tf.constant(fashion.train.y[:32])
    trainer, classifier = _one_step_trainer(mode, fraction, weight)
    before = [w.numpy().copy() for w in classifier.trainable_variables]
    n_adv = 32 if mode != "split" else 16
    x_adv = trainer.adversarial_examples(x[:n_adv], y[:n_adv])
    if mode == "adversarial":
        inputs, labels, weights = x_adv, y, np.ones(32)
    elif mode == "double":
        inputs, labels, weights = tf.concat([x, x_adv], 0), tf.concat([y, y], 0), np.r_[np.ones(32), 0.3 * np.ones(32)]
    else:
        inputs, labels, weights = tf.concat([x[16:], x_adv], 0), tf.concat([y[16:], y[:16]], 0), \
            np.r_[np.ones(16), 0.3 * np.ones(16)]
    weights = tf.constant(weights, tf.float32)
    with tf.GradientTape() as tape:
        per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, classifier(inputs, training=True))
        loss = tf.reduce_sum(weights * per_sample) / tf.reduce_sum(weights)
    expected = tape.gradient(loss, classifier.trainable_variables)
    trainer.train_on_batch(x, y)
    for old, new, grad in zip(before, classifier.trainable_variables, expected):
        np.testing.assert_allclose(old - new.numpy(), grad.numpy(), atol=1e-5)


def test_gradient_through_creation_would_differ(fashion):
    """Guards the test above: differentiating through the attack changes the gradient measurably."""
    x, y = tf.constant(fashion.train.x[:32]), tf.constant(fashion.train.y[:32])
    classifier = models.small_cnn()
    spec = attacks.pgd(0.1, steps=3)

    def loss_fn(x_adv):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, classifier(x_adv)))

    with tf.GradientTape() as tape:
        x_adv = attacks.perturb(classifier, spec, x, y, 0.1, 0.04, 3, tf.constant([0, 1]))
        cut = tape.gradient(loss_fn(x_adv), classifier.trainable_variables)[0]
    with tf.GradientTape() as tape:
        x_adv = x + 0.1 * tf.tanh(classifier(x)[:, :1, tf.newaxis, tf.newaxis])  # a creation that depends on weights
        through = tape.gradient(loss_fn(x_adv), classifier.trainable_variables)[0]
    assert cut is not None and not np.allclose(cut.numpy(), through.numpy())


def test_pgd_training_buys_robustness(tmp_path, fashion):
    """Same data, epochs and seed; PGD training must clearly beat vanilla under PGD at eps 0.1."""
    results = {}
    for mode in ("vanilla", "adversarial"):
        config = tiny_config(mode=mode, **{"data.train_size": 6000, "schedule.epochs": 3, "batch_size": 128,
                                           "attack.method": "pgd", "attack.steps": 5,
                                           "validation.robust_size": 0})
        run = Run.create(config.to_dict(), tmp_path)
        train(config, run, echo=lambda line: None)
        model = models.load(run.model_path)
        x, y = fashion.test.x[:500], fashion.test.y[:500]
        results[mode] = robustness.robust_accuracy(model, x, y, attacks.pgd(0.1, steps=20)).robust_accuracy
    assert results["adversarial"] > results["vanilla"] + 0.2, results  # measured: 0.57 vs 0.25


@pytest.mark.parametrize("changes, field", [
    ({"attack": {"eps": -0.1}}, "attack.eps"),
    ({"attack": {"eps": "big"}}, "attack.eps: must be a number"),
    ({"attack": {"method": "cw"}}, "attack.method: must be one of"),
    ({"attack": {"method": "fgsm", "steps": 5}}, "attack.steps: fgsm takes one step"),
    ({"attack": {"epss": 0.1}}, "attack.epss: unknown field"),
    ({"batch_size": 0}, r"batch_size: must lie in \[1, 8192\], got 0"),
    ({"batch_size": 12.5}, "batch_size: must be an integer"),
    ({"mode": "mixed"}, "mode: must be one of"),
    ({"mix": {"fraction": 1.5}}, "mix.fraction"),
    ({"schedule": {"kind": "warmup", "vanilla_epochs": 5, "epochs": 3}}, "schedule.epochs"),
    ({"schedule": {"epochs": None}, "lr_schedule": {"kind": "cyclic"}}, "lr_schedule.kind: a cyclic schedule"),
    ({"lr_schedule": {"kind": "step"}}, "lr_schedule.milestones"),
    ({"lr_schedule": {"kind": "step", "milestones": [20]}}, "lr_schedule.milestones: epoch 20 is after the run's last"),
    ({"attack": {"step_size": 0.3}}, "attack.step_size: 0.3 is more than twice eps"),
    ({"model": {"architecture": "vgg"}}, "model.architecture: unknown 'vgg'"),
    ({"optimizer": {"learning_rate": 0}}, "optimizer.learning_rate"),
    ({"validation": {"collapse_ratio": 2}}, "validation.collapse_ratio"),
    ({"data": []}, "data: must be an object"),
    ({"data": {"dataset": "svhn"}}, "data.dataset: unknown 'svhn'"),
    ({"model": {"path": "/nowhere/model.keras"}}, "model.path: no model file"),
])
def test_invalid_configs_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.").replace("(", r"\(")):
        TrainConfig.from_dict(changes)


def test_config_round_trips_through_json():
    config = tiny_config(**{"attack.method": "ll_fgsm", "lr_schedule.kind": "step", "lr_schedule.milestones": [2],
                            "schedule.epochs": 3})
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.attack.eps_min == pytest.approx(1e-4)


@pytest.mark.parametrize("hostile", ["../escape", "/etc", "a/b", "", "..", ".hidden", "a..b", "x" * 200,
                                     "run\\x", "name with space"])
def test_hostile_run_ids_are_refused(tmp_path, hostile):
    with pytest.raises(RunError, match="invalid run id"):
        check_run_id(hostile)
    with pytest.raises(RunError):
        Run.open(hostile, tmp_path)


def test_run_names_never_escape_the_root(tmp_path):
    run = Run.create({"name": "x"}, tmp_path / "runs", name="../../etc/passwd")
    assert run.path.parent == tmp_path / "runs" and run.path.is_dir()
    assert ".." not in run.id and "/" not in run.id


def test_damaged_run_files_give_reasons(tmp_path):
    run = Run.create({"name": "x"}, tmp_path)
    run.status_path.write_text("{half")
    with pytest.raises(RunError, match="status.json is damaged"):
        run.status()
    run.history_path.write_bytes(b"\xff\xfe\x00garbage\n\"unclosed")
    with pytest.raises(RunError, match="history.csv is damaged"):
        run.history()


def test_flags_override_the_config_file(tmp_path):
    from advcore.cli.main import build_parser
    from advcore.cli.train_commands import TRAIN_OPTIONS, _config_content
    from advcore.training.config import TrainConfig

    path = tmp_path / "base.json"
    path.write_text('{"name": "base", "attack": {"method": "pgd", "eps": 0.1, "steps": 5}, "batch_size": 64}')
    args = build_parser().parse_args(["train", "--config", str(path), "--eps", "8/255", "--epochs", "until-stopped"])
    config = TrainConfig.from_dict(_config_content(args, TRAIN_OPTIONS))
    assert config.attack.eps == pytest.approx(8 / 255) and config.attack.steps == 5
    assert config.batch_size == 64 and config.name == "base" and config.schedule.epochs is None


def test_learning_rate_schedules():
    from advcore.training.trainer import learning_rate

    cyclic = learning_rate(tiny_config(**{"lr_schedule.kind": "cyclic", "schedule.epochs": 10,
                                          "optimizer.learning_rate": 0.2}), steps_per_epoch=10)
    rates = [float(cyclic(step)) for step in (0, 20, 40, 70, 100)]
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.2, 0.1, 0.0], atol=1e-6)
    step = learning_rate(tiny_config(**{"lr_schedule.kind": "step", "lr_schedule.milestones": [2, 4],
                                        "schedule.epochs": 5, "optimizer.learning_rate": 1.0}), steps_per_epoch=10)
    np.testing.assert_allclose([float(step(s)) for s in (0, 19, 21, 41)], [1, 1, 0.1, 0.01], rtol=1e-6)


def test_batches_depend_on_seed_and_epoch_alone(fashion):
    from advcore.training.trainer import training_batches

    split = fashion.train.take(slice(0, 300))
    y = split.y
    first = [b[1].numpy() for b in training_batches(split, 100, seed=5).take(6)]
    resumed = [b[1].numpy() for b in training_batches(split, 100, seed=5, first_epoch=1).take(3)]
    for a, b in zip(first[3:], resumed):
        np.testing.assert_array_equal(a, b)  # epoch 1 is the same whether or not epoch 0 ran
    assert not np.array_equal(np.concatenate(first[:3]), np.concatenate(first[3:]))  # reshuffled
    assert sorted(np.concatenate(first[:3])) == sorted(y)  # each epoch sees every sample once
    shifted = next(iter(training_batches(split, 300, seed=5, augment="crop")))[0].numpy()
    plain = next(iter(training_batches(split, 300, seed=5)))[0].numpy()
    assert shifted.shape == plain.shape and not np.array_equal(shifted, plain)
    assert np.isclose(shifted.sum(), plain.sum(), rtol=0.1)  # shifts move pixels, rarely lose many


def test_eps_warmup_ramps_over_adversarial_steps():
    config = tiny_config(**{"attack.warmup_epochs": 2.0})
    trainer = AdversarialTrainer(models.small_cnn(), config, steps_per_epoch=5)
    eps = []
    for _ in range(12):
        eps.append(trainer.current_eps())
        trainer.adversarial_steps.assign_add(1)
    np.testing.assert_allclose(eps[:10], 0.1 * np.arange(1, 11) / 10, rtol=1e-6)
    assert eps[10:] == pytest.approx([0.1, 0.1])


def test_collapse_of_robust_accuracy_is_flagged():
    from advcore.training.runner import Recorder

    config = tiny_config(**{"validation.collapse_ratio": 0.5})
    history = __import__("pandas").DataFrame([
        {"epoch": 1, "phase": "adversarial", "val_robust_accuracy": 0.40},
        {"epoch": 2, "phase": "vanilla", "val_robust_accuracy": 0.05}])
    recorder = Recorder(None, config, None, history, chief=True, echo=print)
    assert recorder._collapse_warning("adversarial", 0.30) == ""
    assert "fell to 10.0% from a best of 40.0%" in recorder._collapse_warning("adversarial", 0.10)
    assert recorder._collapse_warning("vanilla", 0.01) == ""  # vanilla epochs are expected to lose it


@pytest.mark.parametrize("content, message", [
    (None, "cannot be read"), ("{half", "not valid JSON"), ("[1, 2]", "must hold a JSON object")])
def test_unreadable_config_files_are_explained(tmp_path, content, message):
    from advcore.training.config import read_file

    path = tmp_path / "c.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=f"config file .*c.json: {message}"):
        read_file(path)
