"""Attack speed: PGD-Linf eps 0.1, 20 steps of 0.01, on 2000 Fashion-MNIST test images, small CNN,
batch 500. Prints images/second for each line, the cost of one attack step relative to one
forward+backward pass of the same batch, and the early-stopping gain of robustness evaluation.

    python benchmarks/attack_speed.py                # AdvLab only
    /tmp/peers/bin/python benchmarks/attack_speed.py # also cleverhans and IBM ART, where installed

Peers are never dependencies: make a throwaway environment for them, e.g.
    python -m venv --system-site-packages /tmp/peers
    /tmp/peers/bin/pip install cleverhans==4.0.0 adversarial-robustness-toolbox==1.20.1
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from advcore import attacks, models  # noqa: E402
from advcore.evaluation import robustness
from advcore.storage import data

EPS, STEPS, STEP_SIZE, BATCH, COUNT = 0.1, 20, 0.01, 500, 2000


def best_time(run, repeats: int = 5) -> float:
    """Best wall time of `repeats` runs after one warm-up run (tracing, allocation)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def report(name: str, seconds: float, count: int = COUNT) -> None:
    print(f"{name:<58} {count / seconds:>9.0f} images/s  ({seconds:.2f} s)")


def standard_model(dataset) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = models.small_cnn()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(dataset.train.x, dataset.train.y, batch_size=128, epochs=2, verbose=0)
    return model


def interleaved_times(runs: dict, rounds: int = 5) -> dict[str, np.ndarray]:
    """Each run once per round, in turn, after a warm-up: ratios taken round by round are robust to
    the machine's speed drifting (this 2-core VM drifts by 20% over minutes)."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: np.array(values) for name, values in times.items()}


def forward_backward(model, x, y):
    """STEPS compiled forward+backward passes (loss gradient w.r.t. the input) over every batch:
    the physical work of the attack without its arithmetic, bookkeeping and extra forwards."""
    spec = attacks.fgsm(EPS)

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1]), tf.TensorSpec([None], tf.int64)])
    def passes(batch, labels):
        checksum = tf.constant(0.0)
        for _ in tf.range(STEPS):
            checksum += tf.reduce_sum(attacks.input_gradient(model, spec, batch, labels)[0])
        return checksum

    batches = [(tf.constant(x[i:i + BATCH]), tf.constant(y[i:i + BATCH])) for i in range(0, len(x), BATCH)]
    return lambda: [passes(b, l).numpy() for b, l in batches]


def cleverhans_runs(model, x, y):
    try:
        from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent
    except ImportError:
        print("cleverhans: not installed here (see the module docstring)")
        return

    def attack(batch, labels):
        return projected_gradient_descent(model, batch, EPS, STEP_SIZE, STEPS, np.inf, clip_min=0.0,
                                          clip_max=1.0, y=labels, rand_init=True, sanity_checks=False)

    def attack_and_classify(batch, labels):
        """What AdvLab's attack returns too: predictions before and after."""
        adversarial = attack(batch, labels)
        return adversarial, tf.argmax(model(batch), -1), tf.argmax(model(adversarial), -1)

    signature = [tf.TensorSpec([None, 28, 28, 1]), tf.TensorSpec([None], tf.int64)]
    compiled = tf.function(attack, input_signature=signature)
    classified = tf.function(attack_and_classify, input_signature=signature)
    for name, fn in (("cleverhans TF2 PGD (eager, as shipped)", attack),
                     ("cleverhans TF2 PGD (wrapped in tf.function)", compiled),
                     ("cleverhans TF2 PGD (tf.function, + predictions as AdvLab)", classified)):
        def run():
            for i in range(0, len(x), BATCH):
                tf.nest.map_structure(lambda t: t.numpy(), fn(tf.constant(x[i:i + BATCH]), tf.constant(y[i:i + BATCH])))
        report(name, best_time(run, repeats=2))


def art_runs(model, x, y):
    try:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import TensorFlowV2Classifier
    except ImportError:
        print("IBM ART: not installed here (see the module docstring)")
        return
    classifier = TensorFlowV2Classifier(
        model, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pgd = ProjectedGradientDescent(classifier, norm=np.inf, eps=EPS, eps_step=STEP_SIZE, max_iter=STEPS,
                                   num_random_init=1, batch_size=BATCH, verbose=False)
    onehot = np.eye(10, dtype=np.float32)[y]
    report("IBM ART ProjectedGradientDescent (TensorFlowV2Classifier)",
           best_time(lambda: pgd.generate(x, y=onehot), repeats=1))


def main() -> None:
    dataset = data.load("fashion_mnist")
    x, y = dataset.test.x[:COUNT], dataset.test.y[:COUNT]
    model = standard_model(dataset)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, devices: "
          f"{[d.device_type for d in tf.config.list_physical_devices()]}; small CNN, clean accuracy "
          f"{robustness.accuracy(model, x, y):.1%} on {COUNT} test images; PGD-Linf eps {EPS}, "
          f"{STEPS} x {STEP_SIZE}, batch {BATCH}\n")

    spec = attacks.pgd(EPS, steps=STEPS, step_size=STEP_SIZE)
    times = interleaved_times({
        "reference": forward_backward(model, x, y),
        "full": lambda: attacks.attack(model, x, y, spec, batch_size=BATCH),
        "early": lambda: robustness.robust_accuracy(model, x, y, spec, batch_size=BATCH)})
    report(f"{STEPS} forward+backward passes (reference)", times["reference"].min())
    report("AdvLab PGD-20 (every sample, every step)", times["full"].min())
    # conservative: the attack also carries a clean and a final forward pass per batch
    print(f"{'  cost of one attack step / one forward+backward pass':<58} "
          f"{np.median(times['full'] / times['reference']):>9.2f} x  (target <= 1.2; median of 5 rounds)")
    report("AdvLab robust-accuracy evaluation (early stop)", times["early"].min())
    print(f"{'  speed-up over attacking every sample every step':<58} "
          f"{np.median(times['full'] / times['early']):>9.2f} x  (target >= 3; median of 5 rounds)")
    evaluation_full = robustness.robust_accuracy(model, x, y, spec, batch_size=BATCH, early_stop=False)
    evaluation_fast = robustness.robust_accuracy(model, x, y, spec, batch_size=BATCH)
    print(f"{'  robust accuracy: early stop / full attack':<58} {evaluation_fast.robust_accuracy:>9.1%} / "
          f"{evaluation_full.robust_accuracy:.1%}  (early stop must not be higher)\n")

    cleverhans_runs(model, x, y)
    art_runs(model, x, y)


if __name__ == "__main__":
    main()
