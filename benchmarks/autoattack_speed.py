"""AutoAttack, AdvLab against IBM ART: AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square) at Linf
0.1 on the first 1,000 Fashion-MNIST test images of the bundled `pgd-linf` model.

For each component it prints the seconds it took and the robust accuracy left after it, then the
total, and Square's queries per second (every query is one forward pass of one image). ART (a
dependency of the tests) then runs its APGD-CE, APGD-T (targeted DLR toward the 2nd..10th most
likely classes) and Square with the same budgets, each on the images still robust, on the same
images; ART has no FAB. Targets: AdvLab at least 5x faster, and its final robust accuracy at most
ART's.

    python benchmarks/autoattack_speed.py [--images 1000] [--no-art]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from advcore import models  # noqa: E402
from advcore.attacks import autoattack  # noqa: E402
from advcore.storage import data  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EPS, STEPS, TARGETS, QUERIES = 0.1, 100, 9, 5000


def advlab(model, x, y) -> tuple[dict, float]:
    """Seconds per component and the accuracy left after it; the robust images entering Square."""
    times, accuracies, last = {}, {}, [time.perf_counter()]

    def report(name, accuracy):
        now = time.perf_counter()
        times[name], accuracies[name], last[0] = now - last[0], accuracy, now

    start = time.perf_counter()
    result = autoattack.autoattack(model, x, y, eps=EPS, version="standard", report=report)
    total = time.perf_counter() - start
    for name in times:
        print(f"AdvLab {name:<8} {times[name]:7.1f} s   robust accuracy after it {accuracies[name]:.1%}")
    entering = round(accuracies["fab-t"] * len(x))
    print(f"AdvLab total    {total:7.1f} s   clean {result.clean_accuracy:.1%}, robust {result.robust_accuracy:.1%}")
    print(f"AdvLab Square: {entering} images x up to {QUERIES} queries in {times['square']:.1f} s: "
          f"{entering * QUERIES / times['square']:,.0f} queries/s (at most; fooled images stop early)")
    return {"total": total, "without_fab": total - times["fab-t"], "robust": result.robust_accuracy,
            "square_rate": entering * QUERIES / times["square"]}


def art(model, x, y) -> dict:
    """ART's APGD-CE, APGD-T and Square, each on the images still robust."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
        from art.estimators.classification import TensorFlowV2Classifier
    peer = TensorFlowV2Classifier(model, nb_classes=10, input_shape=x.shape[1:], clip_values=(0.0, 1.0),
                                  loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logits = model.predict(x, verbose=0)
    robust = np.argmax(logits, -1) == y
    ranked = np.argsort(-logits, axis=1)

    def apgd(loss, targeted):
        return AutoProjectedGradientDescent(peer, norm=np.inf, eps=EPS, eps_step=2 * EPS, max_iter=STEPS,
                                            nb_random_init=1, batch_size=500, loss_type=loss, targeted=targeted,
                                            verbose=False)

    def still_robust(x_adv, rows):
        robust[rows] &= np.argmax(model.predict(x_adv, verbose=0), -1) == y[rows]

    np.random.seed(0)
    start = total = time.perf_counter()
    rows = np.flatnonzero(robust)
    still_robust(apgd("cross_entropy", False).generate(x=x[rows], y=y[rows]), rows)
    print(f"ART    apgd-ce  {time.perf_counter() - start:7.1f} s   robust accuracy after it {robust.mean():.1%}")
    start = time.perf_counter()
    for rank in range(2, TARGETS + 2):
        rows = np.flatnonzero(robust)
        still_robust(apgd("difference_logits_ratio", True).generate(x=x[rows], y=ranked[rows, rank - 1]), rows)
    print(f"ART    apgd-t   {time.perf_counter() - start:7.1f} s   robust accuracy after it {robust.mean():.1%}")
    start, rows = time.perf_counter(), np.flatnonzero(robust)
    square = SquareAttack(peer, norm=np.inf, eps=EPS, max_iter=QUERIES, p_init=0.8, nb_restarts=1, batch_size=500,
                          verbose=False)
    still_robust(square.generate(x=x[rows], y=y[rows]), rows)
    seconds = time.perf_counter() - start
    print(f"ART    square   {seconds:7.1f} s   robust accuracy after it {robust.mean():.1%}")
    print(f"ART Square: {len(rows)} images x up to {QUERIES} queries: {len(rows) * QUERIES / seconds:,.0f} queries/s")
    total = time.perf_counter() - total
    print(f"ART    total    {total:7.1f} s   robust {robust.mean():.1%} (APGD-CE, APGD-T, Square; no FAB)")
    return {"total": total, "robust": float(robust.mean()), "square_rate": len(rows) * QUERIES / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--no-art", action="store_true", help="AdvLab only")
    args = parser.parse_args()
    test = data.load("fashion_mnist").test
    x, y = test.x[:args.images], test.y[:args.images]
    model = models.load(ROOT / "assets" / "models" / "pgd-linf" / "model.keras")
    print(f"AutoAttack standard, Linf {EPS}, bundled pgd-linf, first {len(x)} Fashion-MNIST test images")
    ours = advlab(model, x, y)
    if args.no_art:
        return
    theirs = art(model, x, y)
    print(f"AdvLab is {theirs['total'] / ours['total']:.1f}x faster with FAB-T, "
          f"{theirs['total'] / ours['without_fab']:.1f}x on the components both run (target >= 5x); robust accuracy "
          f"{ours['robust']:.1%} against ART's {theirs['robust']:.1%} (target: at most ART's); Square "
          f"{ours['square_rate'] / theirs['square_rate']:.1f}x the queries per second")


if __name__ == "__main__":
    main()
