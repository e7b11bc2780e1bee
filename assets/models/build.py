"""Trains the bundled models and writes their cards: `python assets/models/build.py [name ...]`.

Each model trains as an ordinary AdvLab run (the same code path as the dashboard's Train page) in a
scratch runs folder; its final model is copied here with a card of measured figures: clean accuracy
on the whole test set and PGD robust accuracy on its first 1000 images.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# name -> (architecture, python -m advcore train flags, how it was trained in words)
RECIPES = {
    "fmnist-standard": ("small_cnn", ["--mode", "vanilla", "--epochs", "5", "--lr", "0.002", "--seed", "0"],
                        "standard (non-robust) training: 5 epochs of Adam, lr 0.002, batch 128, on all "
                        "60,000 Fashion-MNIST training images"),
    "fmnist-fast-at": ("small_cnn", ["--attack", "fgsm_rs", "--eps", "0.1", "--lr-schedule", "cyclic", "--lr", "0.005",
                        "--epochs", "10", "--seed", "0"],
                       "fast adversarial training (Wong et al. 2020): FGSM with random start, Linf eps 0.1, "
                       "step 1.25 eps, 10 epochs, one-cycle learning rate up to 0.005, on all 60,000 "
                       "Fashion-MNIST training images"),
    # The perceptual-alignment judge (advcore.alignment): another architecture and seed than the models it
    # rates, and adversarially trained, so noise that fools a rated model does not sway it.
    "fmnist-judge": ("preact_resnet20", ["--attack", "fgsm_rs", "--eps", "0.1", "--lr-schedule", "cyclic",
                                         "--lr", "0.005", "--epochs", "4", "--seed", "7"],
                     "the perceptual-alignment judge: pre-activation ResNet-20, fast adversarial training "
                     "(FGSM with random start, Linf eps 0.1), 4 epochs, one-cycle learning rate up to 0.005, "
                     "seed 7, on all 60,000 Fashion-MNIST training images"),
}
ROBUST_EPS, ROBUST_STEPS, ROBUST_COUNT = 0.1, 40, 1000


def train(name: str, runs_dir: Path) -> Path:
    architecture, flags, _ = RECIPES[name]
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-m", "advcore", "train", "--name", name, "--runs-dir", str(runs_dir),
                    "--dataset", "fashion_mnist", "--architecture", architecture, *flags], check=True, env=env)
    (run_dir,) = runs_dir.iterdir()
    return run_dir / "model.keras"


def card(name: str, model_path: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from advcore import attacks, data, evaluate, models

    dataset = data.load("fashion_mnist")
    model = models.load(model_path)
    subset = dataset.test.x[:ROBUST_COUNT], dataset.test.y[:ROBUST_COUNT]
    robust = evaluate.robust_accuracy(model, *subset, attacks.pgd(ROBUST_EPS, steps=ROBUST_STEPS))
    return {
        "dataset": "fashion_mnist", "input_shape": list(dataset.input_shape),
        "class_names": list(dataset.class_names), "architecture": RECIPES[name][0],
        "trained": RECIPES[name][2],
        "metrics": {
            "clean accuracy (10,000 test images)": evaluate.accuracy(model, dataset.test.x, dataset.test.y),
            f"PGD-{ROBUST_STEPS} Linf eps {ROBUST_EPS} robust accuracy ({ROBUST_COUNT} test images)":
                robust.robust_accuracy,
        },
        "recipe": "python assets/models/build.py " + name,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"models to build (default: all of {', '.join(RECIPES)})")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(RECIPES))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(RECIPES)}")
    from advcore import files

    for name in args.names or RECIPES:
        with tempfile.TemporaryDirectory() as scratch:
            trained = train(name, Path(scratch))
            target = HERE / name
            target.mkdir(exist_ok=True)
            shutil.copyfile(trained, target / "model.keras")
        files.write_json(target / "card.json", card(name, target / "model.keras"))
        print(f"{name}: {(target / 'card.json').read_text()}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
