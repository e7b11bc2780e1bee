"""`python -m advcore` through real subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advcore.storage import images

ROOT = Path(__file__).resolve().parents[1]


def advcore(*args, check_rc=None, cwd=ROOT):
    """`python -m advcore ARGS` in `cwd` (relative --out folders land there: a test's own folder, never the repo)."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", "advcore", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)
    if check_rc is not None:
        assert done.returncode == check_rc, done.stderr
    return done


def test_attack_writes_pngs_array_and_summary(trained_model_file, fashion, tmp_path):
    out = tmp_path / "adv"
    done = advcore("attack", "--model", trained_model_file, "--eps", "8/255", "--count", 6, "--start", 10,
                   "--method", "pgd", "--steps", 10, "--out", out, check_rc=0)
    assert "attacked 6 images" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attack"]["eps"] == pytest.approx(8 / 255) and summary["count"] == 6
    adversarial = np.load(out / "adversarial.npy")
    assert adversarial.shape == (6, 28, 28, 1)
    full = __import__("advcore.storage.data", fromlist=["load"]).load()
    clean = full.test.x[10:16]
    assert np.abs(adversarial - clean).max() <= 8 / 255 + 1e-6
    for sample, image in zip(summary["samples"], adversarial):
        png = images.read_image(out / sample["png"])
        assert np.abs(png - image).max() <= 0.5 / 255 + 1e-6  # the PNG is the array rounded to 8 bits
        assert sample["linf"] <= 8 / 255 + 1e-6
    assert summary["success_rate"] == np.mean([s["success"] for s in summary["samples"]])


def test_targeted_attack_reports_its_target(trained_model_file, tmp_path):
    advcore("attack", "--model", trained_model_file, "--eps", "0.2", "--count", 4, "--target", 3,
            "--out", tmp_path, check_rc=0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {s["attack_label"] for s in summary["samples"]} == {3}


def test_evaluate_writes_the_curve(trained_model_file, tmp_path):
    done = advcore("evaluate", "--model", trained_model_file, "--eps", "0,0.05,0.1", "--count", 200,
                   "--steps", 10, "--sanity", "--out", tmp_path, check_rc=0)
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert list(curve["eps"]) == [0, 0.05, 0.1]
    assert curve["robust_accuracy"].is_monotonic_decreasing
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sanity"]["flags"] == [] and "eps 0.1: robust accuracy" in done.stdout


def test_evaluate_takes_the_worst_of_both_losses(trained_model_file, tmp_path):
    advcore("evaluate", "--model", trained_model_file, "--eps", "0.05", "--count", 200, "--steps", 10,
            "--loss", "ce+margin", "--out", tmp_path, check_rc=0)
    from advcore import attacks, models
    from advcore.evaluation import robustness
    from advcore.storage import data

    test = data.load("fashion_mnist").test
    worst = robustness.worst_case_accuracy(models.load(trained_model_file), test.x[:200], test.y[:200],
                                           [attacks.pgd(0.05, steps=10, loss=loss) for loss in ("ce", "margin")])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["attack"]["loss"] == "ce+margin"
    assert summary["curve"][0]["robust_accuracy"] == worst.robust_accuracy
    assert worst.robust_accuracy <= min(outcome.robust_accuracy for outcome in worst.outcomes)
    assert worst.robust_accuracy < worst.outcomes[0].robust_accuracy  # so a CE-only figure would differ


def test_evaluate_runs_autoattack_and_reports_each_component(trained_model_file, tmp_path):
    done = advcore("evaluate", "--model", trained_model_file, "--autoattack", "standard", "--eps", "0,0.02",
                   "--count", 16, "--out", tmp_path, check_rc=0)
    curve = pd.read_csv(tmp_path / "curve.csv")
    components = ["after apgd-ce", "after apgd-t", "after fab-t", "after square"]
    assert list(curve.columns[-4:]) == components and list(curve["eps"]) == [0, 0.02]
    assert (curve.loc[0, components] == curve.loc[0, "clean_accuracy"]).all()  # nothing breaks at eps 0
    assert curve.loc[1, "robust_accuracy"] == curve.loc[1, "after square"] <= curve.loc[1, "after apgd-ce"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["attack"] == {"autoattack": "standard", "norm": "linf", "eps": [0.0, 0.02]}
    assert "eps 0.02: robust accuracy" in done.stdout and "left after apgd-ce" in done.stdout


def test_help_explains_every_option():
    done = advcore("attack", "--help", check_rc=0)
    for option in ("--model", "--dataset", "--data-dir", "--eps", "--steps", "--step-size", "--scaling",
                   "--restarts", "--momentum", "--loss", "--random-start", "--target", "--least-likely",
                   "--batch-size", "--seed", "--out"):
        assert option in done.stdout
    assert "8/255" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["attack", "--model", "m.keras", "--out", "o"], "the following arguments are required: --eps"),
    (["attack", "--model", "m.keras", "--out", "o", "--eps", "abc"], "not a number: 'abc'"),
    (["attack", "--model", "m.keras", "--out", "o", "--eps", "0.1", "--norm", "l3"], "invalid choice: 'l3'"),
    (["attack", "--model", "m.keras", "--out", "o", "--eps", "0.1", "--steps", "0"], "must be >= 1"),
    (["attack", "--model", "missing.keras", "--out", "o", "--eps", "0.1"], "missing.keras: no such model file"),
    (["attack", "--model", "m.keras", "--out", "o", "--eps", "-0.1"], "eps must be a finite number >= 0"),
    (["attack", "--model", "m.keras", "--out", "o", "--eps", "0.1", "--method", "fgsm", "--steps", "5"],
     "takes one step"),
    (["evaluate", "--model", "m.keras", "--out", "o", "--eps", "0.1", "--restarts", "3", "--no-random-start"],
     "restarts > 1 need random_start"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["evaluate", "--model", "m.keras", "--out", "o", "--eps", "0.1,-1", "--autoattack", "rand"],
     "eps must be a finite number >= 0"),
    (["evaluate", "--model", "m.keras", "--out", "o", "--eps", "0.1", "--autoattack", "fast"],
     "invalid choice: 'fast'"),
    (["train", "--config", "missing.json"], "config file missing.json: cannot be read"),
])
def test_bad_options_give_one_line_and_exit_2(args, message, tmp_path):
    done = advcore(*args, check_rc=2, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_bad_target_class_and_start(trained_model_file, tmp_path):
    done = advcore("attack", "--model", trained_model_file, "--eps", "0.1", "--target", "12", "--out", tmp_path,
                   check_rc=2)
    assert "--target 12 is not a class of fashion_mnist" in done.stderr
    done = advcore("attack", "--model", trained_model_file, "--eps", "0.1", "--start", "10000", "--out",
                   tmp_path, check_rc=2)
    assert "outside the test split" in done.stderr


def test_interpret_commands_write_their_files(tmp_path):
    robust = ROOT / "assets" / "models" / "pgd-linf" / "model.keras"
    done = advcore("activations", robust, "--classes", "1,7", "--steps", 20, "--out", tmp_path / "act", check_rc=0)
    assert "judge: accuracy" in done.stdout
    assert sorted(p.name for p in (tmp_path / "act").iterdir()) == [
        "1_Trouser.png", "7_Sneaker.png", "activations.npy", "grid.png", "steps.gif", "summary.json"]
    assert json.loads((tmp_path / "act" / "summary.json").read_text())["settings"]["steps"] == 20
    done = advcore("traverse", robust, "--index", 0, "--target", 1, "--steps", 40, "--every", 2,
                   "--out", tmp_path / "t.mp4", check_rc=0)
    assert "21 frames" in done.stdout
    assert len(__import__("imageio.v3", fromlist=["imread"]).imread(tmp_path / "t.mp4", index=None)) == 21
    advcore("explain", robust, "--start", 5, "--count", 1, "--out", tmp_path / "expl", check_rc=0)
    (folder,) = (tmp_path / "expl").iterdir()
    assert folder.name == "5-Trouser" and len(list(folder.glob("*.png"))) == 13
    done = advcore("ara", robust, "--count", 20, "--steps", 40, "--out", tmp_path / "ara", check_rc=0)
    summary = json.loads((tmp_path / "ara" / "summary.json").read_text())
    assert f"Attack ARA {summary['attack_ara']:.4f}" in done.stdout and summary["images"] == 20
    assert len(pd.read_csv(tmp_path / "ara" / "ara.csv")) == 20


@pytest.mark.parametrize("args, message", [
    (["traverse", "--target", 10, "--out", "x.mp4"], "--target must be a class index in 0..9"),
    (["traverse", "--target", 1, "--out", "x.avi"], "--out must end in .mp4 or .gif"),
    (["activations", "--classes", "3,x", "--out", "y"], "--classes must be comma-separated class indices"),
    (["explain", "--rho", "-1", "--out", "z"], "rho must be positive"),
    (["profile", "--shards", 2, "--out", "p"], "--shards splits the work over a cluster: give --cluster too"),
])
def test_interpret_commands_explain_bad_options(args, message, tmp_path):
    robust = ROOT / "assets" / "models" / "pgd-linf" / "model.keras"
    done = advcore(args[0], robust, *args[1:], check_rc=2, cwd=tmp_path)
    assert message in done.stderr
