"""Numbers with documented bounds: every out-of-range option is refused by name, before a run folder
exists, in one line and without a traceback; a loss that stops being finite fails the run."""

import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from advcore.storage.runs import TrainingDiverged
from advcore.training.config import BOUNDS, ConfigError, TrainConfig, bounds_of
from advcore.training.runner import DivergenceCheck, EpochControl, StopRequest

ROOT = Path(__file__).resolve().parents[1]

# command line, the words its one-line error must hold
HOSTILE_OPTIONS = {
    "train seed -1": (["train", "--seed=-1"], "seed: must lie in [0, 4294967295], got -1"),
    "train seed of 31 digits": (["train", "--seed", "1" * 31], "argument --seed: not an integer: '1111"),
    "train a billion attack steps": (["train", "--attack-steps", "1000000000"],
                                     "attack.steps: must lie in [1, 1000], got 1000000000"),
    "train eps 1e30": (["train", "--eps", "1e30"], "attack.eps: 1e+30 is over the linf limit of 1"),
    "train eps 3 in linf": (["train", "--eps", "3"], "8/255 is 0.031"),
    "train lr 1e30": (["train", "--lr", "1e30"], "optimizer.learning_rate: must lie in [0, 10], got 1e+30"),
    "train width 100000": (["train", "--width", "100000"], "model.width: must lie in [1, 16], got 100000"),
    "train-gan z of a million": (["train-gan", "--z-dim", "1000000"], "z_dim: must lie in [1, 4096]"),
    "attack a billion steps": (["attack", "--steps", "1000000000"], "steps must be an integer in [1, 10000]"),
    "attack a billion restarts": (["attack", "--restarts", "1000000000"], "restarts must be an integer in [1, 100]"),
    "attack eps 1e30": (["attack", "--eps", "1e30"], "eps 1e+30 is larger than the whole [0, 1] image range"),
    "evaluate eps 1e30 in l2": (["evaluate", "--eps", "1e30", "--norm", "l2"],
                                "eps 1e+30 is larger than the whole [0, 1] image range allows in l2 (28)"),
}


@pytest.mark.parametrize("case", HOSTILE_OPTIONS)
def test_an_out_of_range_option_is_refused_by_name_and_leaves_nothing(tmp_path, trained_model_file, case):
    arguments, words = HOSTILE_OPTIONS[case]
    if arguments[0] in ("attack", "evaluate"):
        arguments = arguments + ["--model", str(trained_model_file), "--count", "4", "--out", str(tmp_path / "out")]
        if "--eps" not in arguments:
            arguments += ["--eps", "0.1"]
    else:
        arguments = arguments + ["--runs-dir", str(tmp_path / "runs")]
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-m", "advcore", *arguments], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_every_bound_names_a_real_field_and_holds_its_default():
    for dotted in ("seed", "batch_size", "attack.steps", "model.width", "optimizer.learning_rate", "awp.gamma"):
        assert bounds_of(dotted) is not None
    defaults = TrainConfig()
    TrainConfig.from_dict(defaults.to_dict())  # the defaults are inside every bound
    assert len(BOUNDS) >= 30
    with pytest.raises(ConfigError, match=r"validation.steps: must lie in \[1, 1000\]"):
        TrainConfig.from_dict({"validation": {"steps": 5000}})


def test_a_loss_that_is_not_finite_fails_with_the_epoch_and_step():
    """A real Keras fit whose fourth batch holds a NaN: the check stops it in that epoch, by that step."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    x[40] = np.nan  # batch 6 of 8 in the second epoch's order (no shuffle)
    control = EpochControl(StopRequest(), steps_per_epoch=8, on_stop=lambda: None)
    check = DivergenceCheck(control, every_seconds=0.0)
    with pytest.raises(TrainingDiverged, match=r"the loss became nan in epoch 1 \(seen at step 6\): lower the "
                                               r"learning rate \(it was 0.1\); the 0 epochs before it are kept"):
        model.fit(x, np.zeros(64, np.int64), batch_size=8, epochs=2, shuffle=False, verbose=0,
                  callbacks=[control, check])
    assert not math.isfinite(float(model.evaluate(x, np.zeros(64), verbose=0)))
