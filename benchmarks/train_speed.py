"""Training speed: full Fashion-MNIST, small CNN, batch 128, one process. Prints seconds per epoch
(the fastest of epochs 2-4 of each, after tracing: one epoch varies by ~15% on a 2-core machine)
for plain `model.fit`, AdvLab vanilla, FGSM with random start and PGD-k, TRADES-k, MART-k and AWP
on PGD-k and TRADES-k, the ratios the targets are stated in, IBM ART's AdversarialTrainerMadryPGD
where installed, and the process's peak memory.

    python benchmarks/train_speed.py [--pgd-steps 7] [--objectives-only]
    /tmp/peers/bin/python benchmarks/train_speed.py   # also IBM ART (see attack_speed.py's docstring)
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from advcore import models  # noqa: E402
from advcore.storage import data  # noqa: E402
from advcore.training.config import TrainConfig  # noqa: E402
from advcore.training.trainer import AdversarialTrainer, training_batches  # noqa: E402

BATCH, EPS = 128, 0.1
EPOCHS = 4  # the first traces; the fastest of the others is reported


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)

    @property
    def fastest(self) -> float:
        return min(self.seconds[1:])


def plain_fit_epoch(x, y) -> float:
    keras.utils.set_random_seed(0)
    model = models.small_cnn()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[timer])
    return timer.fastest


def advlab_epoch(x, y, mode: str, attack: dict, **sections) -> float:
    keras.utils.set_random_seed(0)
    config = TrainConfig.from_dict({"mode": mode, "batch_size": BATCH, "attack": attack, **sections})
    steps = int(np.ceil(len(x) / BATCH))
    trainer = AdversarialTrainer(models.small_cnn(), config, steps)
    trainer.compile(optimizer="adam")
    trainer.adversarial_phase.assign(mode != "vanilla")
    timer = EpochTimer()
    trainer.fit(training_batches(data.Split(x, y), BATCH, 0), steps_per_epoch=steps, epochs=EPOCHS, verbose=0,
                shuffle=False, callbacks=[timer])
    return timer.fastest


def art_epoch(x, y, pgd_steps: int, share: int = 6) -> float | None:
    """ART on 1/share of the data, scaled up: its epochs are slow and scale linearly in the data."""
    try:
        from art.defences.trainer import AdversarialTrainerMadryPGD
        from art.estimators.classification import TensorFlowV2Classifier
    except ImportError:
        return None
    keras.utils.set_random_seed(0)
    model = models.small_cnn()
    optimizer = keras.optimizers.Adam()
    classifier = TensorFlowV2Classifier(
        model, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0), optimizer=optimizer,
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    subset = len(x) // share
    trainer = AdversarialTrainerMadryPGD(classifier, nb_epochs=1, batch_size=BATCH, eps=EPS,
                                         eps_step=2.5 * EPS / pgd_steps, max_iter=pgd_steps)
    onehot = np.eye(10, dtype=np.float32)[y[:subset]]
    start = time.perf_counter()
    trainer.fit(x[:subset], onehot)
    return (time.perf_counter() - start) * share


def objectives(x, y, k: int) -> None:
    """TRADES-k, MART-k and AWP against PGD-k (and TRADES-k) measured in this run."""
    pgd_attack = {"method": "pgd", "eps": EPS, "steps": k}
    awp = {"awp": {"enabled": True}}
    pgd = advlab_epoch(x, y, "adversarial", pgd_attack)
    trades = advlab_epoch(x, y, "adversarial", pgd_attack, objective={"kind": "trades"})
    mart = advlab_epoch(x, y, "adversarial", pgd_attack, objective={"kind": "mart"})
    pgd_awp = advlab_epoch(x, y, "adversarial", pgd_attack, **awp)
    trades_awp = advlab_epoch(x, y, "adversarial", pgd_attack, objective={"kind": "trades"}, **awp)
    print(f"{f'AdvLab PGD-{k}':<42} {pgd:7.2f} s")
    print(f"{f'AdvLab TRADES-{k}':<42} {trades:7.2f} s  {trades / pgd:5.2f} x PGD-{k}       (target <= 1.15)")
    print(f"{f'AdvLab MART-{k}':<42} {mart:7.2f} s  {mart / pgd:5.2f} x PGD-{k}")
    print(f"{f'AdvLab PGD-{k} + AWP':<42} {pgd_awp:7.2f} s  {pgd_awp / pgd:5.2f} x PGD-{k}       (target <= 1.2)")
    print(f"{f'AdvLab TRADES-{k} + AWP':<42} {trades_awp:7.2f} s  {trades_awp / trades:5.2f} x TRADES-{k}    "
          "(target <= 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pgd-steps", type=int, default=7)
    parser.add_argument("--objectives-only", action="store_true", help="only TRADES, MART and AWP against PGD-k")
    args = parser.parse_args()
    k = args.pgd_steps
    dataset = data.load("fashion_mnist", splits=("train",))
    x, y = dataset.train.x, dataset.train.y
    print(f"full Fashion-MNIST ({len(x)} images), small CNN, batch {BATCH}, {os.cpu_count()} CPU cores; "
          f"seconds per epoch (fastest of epochs 2-{EPOCHS})\n")
    if args.objectives_only:
        objectives(x, y, k)
        return
    plain = plain_fit_epoch(x, y)
    vanilla = advlab_epoch(x, y, "vanilla", {})
    fast = advlab_epoch(x, y, "adversarial", {"method": "fgsm_rs", "eps": EPS})
    pgd = advlab_epoch(x, y, "adversarial", {"method": "pgd", "eps": EPS, "steps": k})
    print(f"{'plain model.fit':<42} {plain:7.2f} s")
    print(f"{'AdvLab vanilla':<42} {vanilla:7.2f} s  {vanilla / plain:5.2f} x plain fit   (target <= 1.05)")
    print(f"{'AdvLab FGSM with random start':<42} {fast:7.2f} s  {fast / vanilla:5.2f} x vanilla     (target <= 2.2)")
    print(f"{f'AdvLab PGD-{k}':<42} {pgd:7.2f} s  {pgd / vanilla:5.2f} x vanilla     "
          f"(target <= {1.1 * (k + 1):.1f} = 1.1 x (k+1))")
    objectives(x, y, k)
    art = art_epoch(x, y, k)
    if art is None:
        print("IBM ART AdversarialTrainerMadryPGD: not installed here")
    else:
        print(f"{f'IBM ART AdversarialTrainerMadryPGD PGD-{k}':<42} {art:7.2f} s  (measured on 1/6 of the data, "
              f"x6)  AdvLab is {art / pgd:.1f} x faster (target >= 5)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{'peak memory of this process':<42} {peak:7.2f} GiB (target < 3)")


if __name__ == "__main__":
    main()
