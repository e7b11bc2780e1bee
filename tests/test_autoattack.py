"""APGD, Square and the AutoAttack ensemble: closed forms, budgets, gradient masking, monotonicity."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize

from advcore import attacks
from advcore.attacks import objectives
from advcore.attacks.apgd import Apgd, apgd
from advcore.attacks.autoattack import CLEAN, autoattack
from advcore.attacks.fab import FabT, boundary_step, fab_t
from advcore.attacks.square import Square, pseudo_gaussian, square, window_share

EPS = {"linf": 0.1, "l2": 1.5}


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_reaches_the_optimal_perturbation_of_a_linear_model(linear_pair, norm):
    model, weights, bias, x, y = linear_pair
    eps = 0.01 if norm == "linf" else 0.04
    result = apgd(model, x, y, Apgd(eps, norm=norm, steps=20))
    toward_other = (weights[:, 1] - weights[:, 0]) * np.where(y == 0, 1.0, -1.0)[:, None]
    reach = eps * (np.abs(toward_other).sum(1) if norm == "linf" else np.linalg.norm(toward_other, axis=1))
    clean_margin = np.abs((x.reshape(len(x), -1) @ weights + bias) @ [1.0, -1.0])
    unbreakable = clean_margin > reach + 1e-3
    assert unbreakable.sum() >= 10 and not result.success[unbreakable].any()
    margin = np.abs(result.logits @ [1.0, -1.0])
    np.testing.assert_allclose(margin[unbreakable], (clean_margin - reach)[unbreakable], rtol=1e-4, atol=1e-4)
    assert result.success[clean_margin < reach - 1e-3].all()  # a breakable sample is broken


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_finds_the_minimal_distance_of_a_linear_model_within_one_percent(linear_pair, norm):
    model, weights, bias, x, y = linear_pair
    result = fab_t(model, x, y, FabT(1.0, norm=norm, targets=1))
    difference = weights[:, 1] - weights[:, 0]
    margin = np.abs(x.reshape(len(x), -1) @ difference + bias[1] - bias[0])
    exact = margin / (np.abs(difference).sum() if norm == "linf" else np.linalg.norm(difference))
    assert result.success.all()
    np.testing.assert_allclose(-result.loss, exact, rtol=0.01)
    delta = (result.x_adv - x).reshape(len(x), -1)
    np.testing.assert_allclose(np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1), -result.loss,
                               rtol=1e-5)
    budget = float(np.median(exact))
    within = fab_t(model, x, y, FabT(budget, norm=norm, targets=1))
    assert within.success[exact < budget * 0.99].all() and not within.success[exact > budget * 1.01].any()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_boundary_step_is_the_smallest_step_onto_the_hyperplane_in_the_box(norm):
    rng = np.random.default_rng(1)
    points, w = rng.uniform(0, 1, (40, 6)), rng.normal(size=(40, 6))
    c = rng.normal(size=40) * 0.5
    steps = boundary_step(tf.constant(points, tf.float32), tf.constant(w, tf.float32), tf.constant(c, tf.float32),
                          norm).numpy()
    assert np.all(points + steps >= -1e-6) and np.all(points + steps <= 1 + 1e-6)
    checked = 0
    for p, wi, ci, step in zip(points, w, c, steps):
        reachable = np.sum(np.abs(wi) * np.where(np.sign(ci) * wi > 0, 1 - p, p)) >= abs(ci)
        if not reachable:  # every coordinate moves all the way toward the hyperplane
            np.testing.assert_allclose(step, np.where(np.sign(ci) * wi > 0, 1 - p, -p) * (wi != 0), atol=1e-6)
            continue
        assert abs(wi @ step - ci) < 1e-4
        bounds = list(zip(-p, 1 - p))
        if norm == "linf":  # min t with -t <= d_i <= t and w.d = c, as a linear program over (d, t)
            within_t = np.block([[np.eye(6), -np.ones((6, 1))], [-np.eye(6), -np.ones((6, 1))]])
            best = optimize.linprog(np.r_[np.zeros(6), 1.0], A_ub=within_t, b_ub=np.zeros(12),
                                    A_eq=np.r_[wi, 0.0][None], b_eq=[ci], bounds=bounds + [(0, None)])
            assert np.abs(step).max() <= best.fun + 1e-5
        else:
            best = optimize.minimize(lambda d: d @ d, np.zeros(6), jac=lambda d: 2 * d, bounds=bounds, method="SLSQP",
                                     constraints=[{"type": "eq", "fun": lambda d: wi @ d - ci}], tol=1e-12)
            assert np.linalg.norm(step) <= np.sqrt(best.fun) + 1e-5
        checked += 1
    assert checked >= 20


def test_pseudo_gaussian_squares_have_unit_norm_and_opposite_halves():
    sums = tf.cumsum(tf.concat([[0.0], 1.0 / tf.square(tf.range(1, 40, dtype=tf.float32))], 0))
    for side in (3, 5, 8, 25):
        row, column = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        square_ = pseudo_gaussian(tf.constant(row, tf.int32), tf.constant(column, tf.int32), side, False, sums).numpy()
        assert np.linalg.norm(square_) == pytest.approx(1.0, abs=1e-5)
        assert np.all(square_[:side // 2] > 0) and np.all(square_[side // 2:] < 0)
        assert square_[(side // 2) // 2, side // 2] == square_[:side // 2].max()  # peaks at each half's centre
        turned = pseudo_gaussian(tf.constant(row, tf.int32), tf.constant(column, tf.int32), side, True, sums).numpy()
        np.testing.assert_allclose(turned, square_.T)


def test_dlr_ignores_shifts_and_scales_of_the_logits():
    logits = np.random.default_rng(0).normal(size=(32, 10)).astype(np.float32)
    labels = np.arange(32) % 10
    targets = (labels + 3) % 10
    for loss in (lambda z: objectives.dlr(z, labels), lambda z: objectives.targeted_dlr(z, labels, targets)):
        np.testing.assert_allclose(loss(logits * 3.0 + 2.0), loss(logits), rtol=1e-4, atol=1e-5)


CASES = {
    "apgd_ce_linf": (apgd, lambda: Apgd(EPS["linf"], steps=10)),
    "apgd_ce_l2": (apgd, lambda: Apgd(EPS["l2"], norm="l2", steps=10)),
    "apgd_dlr_l2": (apgd, lambda: Apgd(EPS["l2"], norm="l2", loss="dlr", steps=10, restarts=2)),
    "apgd_t_linf": (apgd, lambda: Apgd(EPS["linf"], loss="dlr_targeted", steps=10, targets=3)),
    "apgd_eot": (apgd, lambda: Apgd(EPS["linf"], steps=5, eot=3)),
    "fab_t_linf": (fab_t, lambda: FabT(EPS["linf"], steps=10, targets=2)),
    "fab_t_l2": (fab_t, lambda: FabT(EPS["l2"], norm="l2", steps=10, targets=2, restarts=2)),
    "square_linf": (square, lambda: Square(EPS["linf"], queries=100)),
    "square_l2": (square, lambda: Square(EPS["l2"], norm="l2", queries=100, restarts=2)),
}


@pytest.mark.parametrize("case", CASES)
def test_every_sample_within_eps_and_range_and_the_input_untouched(case, fashion, trained_model):
    run, settings = CASES[case]
    settings = settings()
    x, y = fashion.test.x[:96], fashion.test.y[:96]
    before = x.copy()
    result = run(trained_model, x, y, settings, seed=3)
    np.testing.assert_array_equal(x, before)
    delta = (result.x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(1) if settings.norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= settings.eps * (1 + 1e-5) + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    predictions = np.argmax(trained_model.predict(result.x_adv, verbose=0), -1)
    np.testing.assert_array_equal(result.success, predictions != y)  # success is what the model says
    clean = np.argmax(trained_model.predict(x, verbose=0), -1) != y
    assert result.success.mean() > clean.mean() + 0.15  # a standard model breaks, even in few steps


@pytest.mark.parametrize("case", ["apgd_t_linf", "fab_t_l2", "square_l2"])
def test_results_do_not_depend_on_batching(case, fashion, trained_model):
    run, settings = CASES[case]
    x, y = fashion.test.x[:80], fashion.test.y[:80]
    whole = run(trained_model, x, y, settings(), seed=5, batch_size=64)
    parts = [run(trained_model, x[i:i + 40], y[i:i + 40], settings(), seed=5, first_index=i, batch_size=16)
             for i in (0, 40)]
    # equal up to float rounding: a model's arithmetic may differ slightly between batch sizes
    np.testing.assert_allclose(whole.x_adv, np.concatenate([p.x_adv for p in parts]), atol=1e-5)
    np.testing.assert_array_equal(whole.success, np.concatenate([p.success for p in parts]))


@pytest.mark.parametrize("run, settings", [(apgd, Apgd(0.0, steps=5)), (fab_t, FabT(0.0, steps=5, targets=1)),
                                           (square, Square(0.0, queries=20)), (square, Square(0.0, norm="l2"))])
def test_eps_zero_returns_the_input(run, settings, fashion, trained_model):
    x, y = fashion.test.x[:32], fashion.test.y[:32]
    result = run(trained_model, x, y, settings)
    np.testing.assert_array_equal(result.x_adv, x)
    np.testing.assert_array_equal(result.success, np.argmax(trained_model.predict(x, verbose=0), -1) != y)


class Quantise(keras.layers.Layer):
    """Rounds inputs to halves with no gradient through: a model that masks its gradient."""

    def call(self, x):
        return keras.ops.stop_gradient(keras.ops.round(x * 2.0) / 2.0)


def test_square_breaks_a_gradient_masked_model_that_apgd_cannot():
    inputs = keras.Input((8, 8, 1))
    share_up = keras.layers.Flatten()(Quantise()(inputs))
    logits = keras.layers.Dense(2)(share_up)  # class 1 when over 3/4 of the pixels round up to 1
    model = keras.Model(inputs, logits)
    model.layers[-1].set_weights([np.stack([np.zeros(64), np.full(64, 4 / 64)], 1).astype(np.float32),
                                  np.array([0.0, -3.0], np.float32)])
    x, y = np.full((8, 8, 8, 1), 0.5, np.float32), np.zeros(8, np.int64)
    assert not apgd(model, x, y, Apgd(0.3, restarts=3)).success.any()
    assert not fab_t(model, x, y, FabT(0.3, targets=1)).success.any()
    found = square(model, x, y, Square(0.3, queries=1000))
    assert found.success.all() and np.abs(found.x_adv - x).max() <= 0.3 + 1e-6


def test_window_share_halves_on_the_schedule():
    shares = [float(window_share(i, 10_000, 0.8)) for i in (0, 10, 11, 50, 51, 8000, 8001, 9999)]
    assert shares == pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.8 / 256, 0.8 / 512, 0.8 / 512])
    # rescaled to the budget: query 100 of 1,000 is query 1,000 of 10,000, query 101 is past it
    assert [float(window_share(i, 1000, 0.8)) for i in (100, 101)] == pytest.approx([0.8 / 16, 0.8 / 32])


def test_autoattack_accuracy_only_falls_component_by_component_and_with_eps(fashion, trained_model):
    x, y = fashion.test.x[:64], fashion.test.y[:64]
    seen = []
    results = [autoattack(trained_model, x, y, eps=eps, version=["apgd-ce", "apgd-t"],
                          report=lambda name, accuracy: seen.append(name)) for eps in (0.0, 0.01, 0.03)]
    assert seen == ["apgd-ce", "apgd-t"] * 3
    for result in results:
        after = list(result.accuracy_after.values())
        assert after == sorted(after, reverse=True) and result.robust_accuracy == after[-1]
        assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
        assert np.all((result.broken_by == "") == result.robust)
    assert results[0].robust_accuracy == results[0].clean_accuracy  # nothing breaks at eps 0
    assert results[0].robust_accuracy >= results[1].robust_accuracy >= results[2].robust_accuracy
    strong = results[2]
    assert set(strong.broken_by) <= {"", CLEAN, "apgd-ce", "apgd-t"}
    broken = strong.broken_by != ""
    predictions = np.argmax(trained_model.predict(strong.x_adv, verbose=0), -1)
    np.testing.assert_array_equal(predictions[broken] != y[broken], True)  # every breaking example breaks
    np.testing.assert_array_equal(strong.x_adv[~broken], x[~broken])
    assert sum(strong.broken_share().values()) + strong.robust_accuracy == pytest.approx(strong.clean_accuracy)
    pgd = attacks.attack(trained_model, x, y, attacks.pgd(0.03, steps=20))
    assert strong.robust_accuracy <= 1 - pgd.success.mean()


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: autoattack(m, x, y, eps=0.1, version="fast"), "unknown AutoAttack version"),
    (lambda m, x, y: autoattack(m, x, y, eps=0.1, version=["apgd-ce", "pgd"]), "components must be"),
    (lambda m, x, y: autoattack(m, x, y, eps=0.1, version=["apgd-ce", "apgd-ce"]), "repeat"),
    (lambda m, x, y: autoattack(m, x, y, eps=-0.1), "eps must be"),
    (lambda m, x, y: apgd(m, x, y, Apgd(0.1, loss="hinge")), "unknown APGD loss"),
    (lambda m, x, y: apgd(m, x, y, Apgd(0.1, steps=0)), "steps must be"),
    (lambda m, x, y: apgd(m, x, y, Apgd(0.1, loss="dlr_targeted", targets=10)), "at least 11 classes"),
    (lambda m, x, y: square(m, x, y, Square(0.1, norm="l1")), "unknown norm"),
    (lambda m, x, y: fab_t(m, x, y, FabT(0.1, targets=10)), "at least 11 classes"),
    (lambda m, x, y: fab_t(m, x, y, FabT(0.1, beta=1.0)), "beta in"),
    (lambda m, x, y: apgd(m, (x * 255).astype(np.uint8), y, Apgd(0.1)), "float32 in \\[0, 1\\]"),
    (lambda m, x, y: apgd(m, x, y[:3], Apgd(0.1)), "one class index per image"),
])
def test_bad_input_is_refused_clearly(call, message, fashion, trained_model):
    with pytest.raises(ValueError, match=message):
        call(trained_model, fashion.test.x[:4], fashion.test.y[:4])


@pytest.mark.parametrize("version, components", [("standard", ["apgd-ce", "apgd-t", "fab-t", "square"]),
                                                 ("rand", ["apgd-ce", "apgd-dlr"])])
def test_the_versions_run_their_components_in_order(version, components, fashion, trained_model):
    x, y = fashion.test.x[:24], fashion.test.y[:24]
    result = autoattack(trained_model, x, y, eps=0.02, norm="l2" if version == "rand" else "linf", version=version)
    assert list(result.accuracy_after) == [CLEAN, *components]
    assert set(result.broken_by) <= {"", CLEAN, *components}
