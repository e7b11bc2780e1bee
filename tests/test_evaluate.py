"""Robust accuracy, curves, the attack matrix and the gradient-masking flags."""

import keras
import numpy as np
import pandas as pd
import pytest

from advcore import attacks
from advcore.evaluation import robustness


@pytest.fixture(scope="module")
def batch(fashion):
    return fashion.test.x[:300], fashion.test.y[:300]


def test_clean_accuracy_matches_keras(trained_model, batch):
    x, y = batch
    expected = np.mean(np.argmax(trained_model.predict(x, verbose=0), 1) == y)
    assert robustness.accuracy(trained_model, x, y, batch_size=64) == pytest.approx(expected)


def test_early_stopped_evaluation_is_never_more_optimistic(trained_model, batch):
    x, y = batch
    spec = attacks.pgd(0.05, steps=10)
    fast = robustness.robust_accuracy(trained_model, x, y, spec)
    full = robustness.robust_accuracy(trained_model, x, y, spec, early_stop=False)
    assert fast.robust_accuracy <= full.robust_accuracy
    assert fast.clean_accuracy == full.clean_accuracy
    assert np.all(fast.robust <= (fast.result.clean_predictions == y))


def test_curve_falls_with_eps_and_reaches_zero(trained_model, batch):
    x, y = batch
    curve = robustness.robustness_curve(trained_model, x, y, attacks.pgd(0.1, steps=10), [0.2, 0, 0.05, 0.1])
    assert list(curve["eps"]) == [0, 0.05, 0.1, 0.2]
    assert curve["robust_accuracy"].iloc[0] == pytest.approx(curve["clean_accuracy"].iloc[0])
    assert np.all(np.diff(curve["robust_accuracy"]) <= 0)
    assert curve["robust_accuracy"].iloc[-1] < 0.02


def test_worst_case_counts_a_sample_robust_only_if_every_attack_fails(trained_model, batch):
    x, y = batch
    specs = robustness.strongest(0.05, steps=10, restarts=2)
    assert [(s.loss, s.steps, s.restarts, s.random_start) for s in specs] == [("ce", 10, 2, True),
                                                                              ("margin", 10, 2, True)]
    worst = robustness.worst_case_accuracy(trained_model, x, y, specs)
    alone = [robustness.robust_accuracy(trained_model, x, y, spec).robust for spec in specs]
    np.testing.assert_array_equal(worst.robust, alone[0] & alone[1])
    assert worst.robust_accuracy == pytest.approx(np.mean(alone[0] & alone[1]))
    assert [o.robust_accuracy for o in worst.outcomes] == pytest.approx([a.mean() for a in alone])
    defaults = robustness.strongest(0.1, norm="l2")
    assert {(s.steps, s.restarts, s.norm) for s in defaults} == {(50, 10, "l2")}


def test_a_curve_of_several_attacks_is_their_worst_case(trained_model, batch):
    x, y = batch
    specs = [attacks.pgd(0.1, steps=5, loss=loss) for loss in attacks.LOSSES]
    curve = robustness.robustness_curve(trained_model, x, y, specs, [0.03, 0.06])
    for eps, robust in zip(curve["eps"], curve["robust_accuracy"]):
        assert robust == robustness.worst_case_accuracy(
            trained_model, x, y, [s.replace(eps=eps) for s in specs]).robust_accuracy
        assert robust <= min(robustness.robust_accuracy(trained_model, x, y, s.replace(eps=eps)).robust_accuracy
                             for s in specs)


def test_attack_matrix_has_a_row_per_model_and_a_column_per_attack(trained_model, batch):
    x, y = batch
    untrained = keras.models.clone_model(trained_model)
    matrix = robustness.attack_matrix({"trained": trained_model, "untrained": untrained},
                                      {"fgsm": attacks.fgsm(0.05), "pgd": attacks.pgd(0.05, steps=5)},
                                      x[:100], y[:100])
    assert list(matrix.index) == ["trained", "untrained"] and list(matrix.columns) == ["clean", "fgsm", "pgd"]
    assert (matrix["pgd"] <= matrix["clean"]).all()
    assert matrix.loc["trained", "clean"] > matrix.loc["untrained", "clean"]


def test_a_healthy_model_raises_no_flag(trained_model, batch):
    x, y = batch
    flags, figures = robustness.sanity_checks(trained_model, x[:200], y[:200], eps=0.1, steps=10)
    assert flags == []
    assert figures["unbounded_accuracy"] == 0 and figures["zero_gradient_fraction"] == 0


def test_softmax_and_masked_gradients_are_flagged(trained_model, batch):
    """Rounding the input to 4 grey levels zeroes every input gradient: classic gradient masking."""
    x, y = batch
    inputs = keras.Input((28, 28, 1))
    rounded = keras.layers.Activation(lambda t: keras.ops.round(t * 3) / 3)(inputs)
    masked = keras.Model(inputs, keras.layers.Softmax()(trained_model(rounded)))
    flags, _ = robustness.sanity_checks(masked, x[:100], y[:100], eps=0.1, steps=5)
    codes = {flag.code for flag in flags}
    assert {"softmax_output", "zero_gradients", "large_eps_not_zero"} <= codes


def test_accuracy_rising_with_eps_is_flagged():
    curve = pd.DataFrame({"eps": [0.0, 0.1, 0.2], "robust_accuracy": [0.9, 0.3, 0.5]})
    assert [flag.code for flag in robustness.check_curve(curve, 0.01)] == ["accuracy_rises_with_eps"]
    assert robustness.check_curve(curve.assign(robust_accuracy=[0.9, 0.5, 0.3]), 0.01) == []


def test_each_figure_raises_its_flag():
    healthy = {"outputs_probabilities": False, "zero_gradient_fraction": 0.0, "single_step_accuracy": 0.3,
               "pgd_accuracy": 0.2, "curve": [{"eps": 0.05, "robust_accuracy": 0.5},
                                              {"eps": 0.1, "robust_accuracy": 0.2}],
               "unbounded_eps": 1.0, "unbounded_accuracy": 0.0}
    assert robustness.check_figures(healthy, 0.01) == []
    for change, code in [({"pgd_accuracy": 0.4}, "pgd_weaker_than_fgsm"),
                         ({"zero_gradient_fraction": 0.5}, "zero_gradients"),
                         ({"outputs_probabilities": True}, "softmax_output"),
                         ({"unbounded_accuracy": 0.5}, "large_eps_not_zero")]:
        assert [flag.code for flag in robustness.check_figures(healthy | change, 0.01)] == [code]


def test_empty_eps_list_is_refused(trained_model, batch):
    with pytest.raises(ValueError, match="eps_values is empty"):
        robustness.robustness_curve(trained_model, *batch, attacks.pgd(0.1), [])
