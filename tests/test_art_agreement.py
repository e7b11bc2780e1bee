"""AutoAttack's members against an independent implementation (IBM ART) with the same budgets.

On the session's small trained model, AdvLab's robust accuracy must be at most ART's + 0.5 points
for each member: an attack of ours that is weaker than the peer's would overstate robustness.
"""

import warnings

import keras
import numpy as np
import pytest

from advcore.attacks.apgd import Apgd, apgd
from advcore.attacks.square import Square, square

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    evasion = pytest.importorskip("art.attacks.evasion")
    classification = pytest.importorskip("art.estimators.classification")

EPS, IMAGES, QUERIES = 0.02, 250, 300

MEMBERS = {
    "apgd-ce": (lambda: Apgd(EPS, loss="ce"),
                lambda peer: evasion.AutoProjectedGradientDescent(
                    peer, norm=np.inf, eps=EPS, eps_step=2 * EPS, max_iter=100, nb_random_init=1, batch_size=250,
                    loss_type="cross_entropy", verbose=False)),
    "apgd-dlr": (lambda: Apgd(EPS, loss="dlr"),
                 lambda peer: evasion.AutoProjectedGradientDescent(
                     peer, norm=np.inf, eps=EPS, eps_step=2 * EPS, max_iter=100, nb_random_init=1, batch_size=250,
                     loss_type="difference_logits_ratio", verbose=False)),
    "square": (lambda: Square(EPS, queries=QUERIES),
               lambda peer: evasion.SquareAttack(peer, norm=np.inf, eps=EPS, max_iter=QUERIES, p_init=0.8,
                                                 nb_restarts=1, batch_size=250, verbose=False)),
}


@pytest.mark.parametrize("member", MEMBERS)
def test_robust_accuracy_is_at_most_arts(member, trained_model, fashion):
    x, y = fashion.test.x[:IMAGES], fashion.test.y[:IMAGES]
    settings, peer_attack = MEMBERS[member]
    ours = apgd if isinstance(settings(), Apgd) else square
    result = ours(trained_model, x, y, settings())
    assert np.abs(result.x_adv - x).max() <= EPS + 1e-6
    peer = classification.TensorFlowV2Classifier(
        trained_model, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    np.random.seed(0)  # ART draws its random starts and squares from numpy's global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_peer = peer_attack(peer).generate(x=x, y=y)
    clean = np.argmax(trained_model.predict(x, verbose=0), -1) == y
    theirs = float(np.mean(clean & (np.argmax(trained_model.predict(x_peer, verbose=0), -1) == y)))
    assert np.abs(x_peer - x).max() <= EPS + 1e-6  # the same budget
    assert 1 - result.success.mean() <= theirs + 0.005, (member, 1 - result.success.mean(), theirs)
    assert theirs < clean.mean() - 0.05  # the peer's attack works, so the comparison means something
