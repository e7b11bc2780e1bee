"""The Playground's traced attack: the same result as `attacks.attack`, with every step on record."""

import numpy as np
import pytest

from advcore import attacks
from advcore.attacks import trace

SPECS = {
    "fgsm": (attacks.fgsm(0.05), None),
    "pgd restarts": (attacks.pgd(0.03, steps=8, restarts=3), None),
    "pgd l2 margin": (attacks.pgd(0.8, norm="l2", steps=6, loss="margin"), None),
    "momentum": (attacks.mifgsm(0.05, steps=6), None),
    "targeted": (attacks.pgd(0.05, steps=6, target="targeted"), 3),
    "least likely, early stop": (attacks.pgd(0.1, steps=6, restarts=2, target="least_likely", early_stop=True), None),
    "early stop": (attacks.pgd(0.02, steps=10, restarts=3, early_stop=True), None),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_trace_result_is_exactly_the_attack_result(trained_model, fashion, name):
    spec, target = SPECS[name]
    x, y = fashion.test.x[:8], fashion.test.y[:8]
    expected = attacks.attack(trained_model, x, y, spec, target=target, seed=5, first_index=40)
    traced = trace.trace(trained_model, x, y, spec, target=target, seed=5, first_index=40).result
    np.testing.assert_allclose(traced.x_adv, expected.x_adv, atol=1e-6)
    for field in ("success", "labels", "predictions", "clean_predictions"):
        np.testing.assert_array_equal(getattr(traced, field), getattr(expected, field))
    np.testing.assert_allclose(traced.loss, expected.loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(traced.linf, expected.linf, atol=1e-6)


def test_every_iterate_respects_the_ball_and_the_box(trained_model, fashion):
    x, y = fashion.test.x[:4], fashion.test.y[:4]
    spec = attacks.pgd(0.05, steps=10, restarts=2)
    traced = trace.trace(trained_model, x, y, spec)
    assert traced.iterates.shape == (2, 11, 4, 28, 28, 1) and traced.logits.shape == (2, 11, 4, 10)
    assert np.abs(traced.iterates - x).max() <= 0.05 + 1e-6
    assert traced.iterates.min() >= 0 and traced.iterates.max() <= 1


def test_chosen_path_ends_at_the_result_and_starts_at_the_image_without_random_start(trained_model, fashion):
    x, y = fashion.test.x[:3], fashion.test.y[:3]
    traced = trace.trace(trained_model, x, y, attacks.pgd(0.1, steps=12, random_start=False, early_stop=True))
    for sample in range(3):
        path = traced.chosen_path(sample)
        np.testing.assert_array_equal(path["iterates"][-1], traced.result.x_adv[sample])
        np.testing.assert_array_equal(path["iterates"][0], x[sample])
        assert traced.result.success[sample] == (path["logits"][-1].argmax() != y[sample])
        # early stop: the result is the first fooling iterate, so no earlier one fooled
        assert (path["logits"][:-1].argmax(-1) == y[sample]).all()


def test_with_early_stop_a_misclassified_image_is_kept_unchanged(trained_model, fashion):
    wrong = np.flatnonzero(trained_model.predict(fashion.test.x[:200], verbose=0).argmax(-1) != fashion.test.y[:200])[0]
    x, y = fashion.test.x[wrong:wrong + 1], fashion.test.y[wrong:wrong + 1]
    traced = trace.trace(trained_model, x, y, attacks.pgd(0.1, steps=5, early_stop=True))
    assert traced.chosen[0].tolist() == [-1, 0] and traced.result.linf[0] == 0
    np.testing.assert_array_equal(traced.chosen_path(0)["iterates"][0], x[0])
