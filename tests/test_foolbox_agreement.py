"""Agreement with an independent implementation (foolbox 3) on a small trained model."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

from advcore import attacks
from advcore.evaluation import robustness

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    foolbox = pytest.importorskip("foolbox")


@pytest.mark.parametrize("norm, eps, step, peer_attack", [
    ("linf", 0.1, 0.01, "LinfPGD"),
    ("linf", 0.05, 0.01, "LinfPGD"),
    ("l2", 1.5, 0.1, "L2PGD"),
])
def test_robust_accuracy_agrees_with_foolbox(trained_model, fashion, norm, eps, step, peer_attack):
    x, y = fashion.test.x[:500], fashion.test.y[:500]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer_model = foolbox.TensorFlowModel(trained_model, bounds=(0, 1))
    peer = getattr(foolbox.attacks, peer_attack)(abs_stepsize=step, steps=20, random_start=True)
    _, _, fooled = peer(peer_model, tf.constant(x), tf.constant(y), epsilons=eps)
    theirs = 1 - float(np.mean(fooled.numpy()))
    ours = robustness.robust_accuracy(trained_model, x, y,
                                      attacks.pgd(eps, norm=norm, steps=20, step_size=step)).robust_accuracy
    assert abs(ours - theirs) <= 0.01, (ours, theirs)
    assert ours <= theirs + 0.01
