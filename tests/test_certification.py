"""Randomized smoothing against closed forms and SciPy: the Clopper-Pearson bound and the binomial
test, a linear two-class model whose smoothed probability is Phi(margin / (sigma |w|)), abstention
where the classes tie, and noise that depends on image indices only (not on batches or splits)."""

import dataclasses
import json
import math
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from advcore import models
from advcore.certification import sampling, smoothing
from advcore.evaluation import plans, shards
from advcore.storage import data

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (4, 4, 1)


def linear_model(w: np.ndarray, bias: float) -> keras.Model:
    """Two classes, logit 1 - logit 0 = w . x + bias: the L2 distance of x to the boundary is
    |w . x + bias| / |w|."""
    inputs = keras.Input(SHAPE)
    layer = keras.layers.Dense(2)
    model = keras.Model(inputs, layer(keras.layers.Flatten()(inputs)))
    layer.set_weights([np.stack([np.zeros_like(w), w], axis=1).astype(np.float32),
                       np.array([0.0, bias], np.float32)])
    return model


W = np.linspace(-1.0, 1.0, 16).astype(np.float32)  # |w| = 2.43


def images_at(margins) -> np.ndarray:
    """Images in [0, 1] whose signed distances to the boundary of linear_model(W, 0) are `margins`."""
    base = np.full(16, 0.5, np.float32)  # w . base = 0
    return np.stack([base + m * W / np.linalg.norm(W) for m in margins]).reshape(-1, *SHAPE).astype(np.float32)


@pytest.mark.parametrize("count, n, alpha", [(1, 10, 0.05), (50, 100, 0.001), (99_000, 100_000, 0.001),
                                             (100_000, 100_000, 0.001), (7, 1_000, 0.01)])
def test_the_lower_bound_is_scipys_exact_one_sided_interval(count, n, alpha):
    exact = stats.binomtest(count, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
    assert smoothing.lower_confidence_bound(count, n, alpha) == pytest.approx(exact, rel=1e-9)
    assert smoothing.lower_confidence_bound(0, n, alpha) == 0.0


@pytest.mark.parametrize("top, second", [(10, 0), (60, 40), (30, 30), (9, 1)])
def test_the_binomial_test_is_the_two_sided_sum_of_equally_likely_outcomes(top, second):
    n = top + second
    pmf = [math.comb(n, k) / 2 ** n for k in range(n + 1)]
    by_hand = min(1.0, sum(p for p in pmf if p <= pmf[top] * (1 + 1e-7)))
    assert smoothing.binomial_p_value(top, second) == pytest.approx(by_hand, rel=1e-9)


def test_a_linear_models_certified_radius_approaches_its_distance_to_the_boundary():
    sigma, margins = 0.25, [0.05, 0.2, 0.4, -0.3]
    model = linear_model(W, 0.0)
    setting = smoothing.Smoothing(sigma, n0=100, n=100_000, alpha=0.001)
    certificates = smoothing.certify(model, images_at(margins), setting)
    assert list(certificates.prediction) == [1, 1, 1, 0]
    p_true = stats.norm.cdf(np.abs(margins) / sigma)
    noise = np.sqrt(p_true * (1 - p_true) / setting.n)
    assert np.all(np.abs(certificates.count / setting.n - p_true) < 5 * noise)  # the counts are binomial(n, pA)
    distance = np.abs(margins)
    assert np.all(certificates.radius <= distance + 1e-9)  # sound (with probability 1 - alpha each)
    assert np.all(certificates.radius > distance - 0.02)  # and tight: within the bound's slack


def test_a_tie_abstains_and_a_clear_side_does_not():
    model = linear_model(W, 0.0)
    setting = smoothing.Smoothing(0.5, n0=100, n=2_000, alpha=0.001)
    x = images_at([0.0, 0.0, 1.0])
    certificates = smoothing.certify(model, x, setting)
    assert list(certificates.prediction[:2]) == [smoothing.ABSTAIN] * 2 and list(certificates.radius[:2]) == [0, 0]
    assert certificates.prediction[2] == 1 and certificates.radius[2] > 0
    assert list(smoothing.predict(model, x, setting)) == [smoothing.ABSTAIN, smoothing.ABSTAIN, 1]


def test_noise_depends_on_the_image_index_only():
    model = linear_model(W, 0.0)
    setting = smoothing.Smoothing(1.0, n0=100, n=1_050, seed=5)
    x = images_at([0.1, -0.2, 0.3, 0.0, 0.05])
    whole = smoothing.certify(model, x, setting, batch_size=300)
    again = smoothing.certify(model, x, setting, batch_size=1_100)
    split = smoothing.Certificates.joined([smoothing.certify(model, x[:2], setting, batch_size=100),
                                           smoothing.certify(model, x[2:], setting, indices=[2, 3, 4], batch_size=500)])
    for other in (again, split):
        for name in ("prediction", "radius", "p_lower", "count"):
            np.testing.assert_array_equal(getattr(whole, name), getattr(other, name))
    reseeded = smoothing.certify(model, x, smoothing.Smoothing(1.0, n0=100, n=1_050, seed=6), batch_size=300)
    assert not np.array_equal(whole.count, reseeded.count)
    counts = sampling.class_counts(model, x[0], 1.0, 1_050, sampling.image_key(5, 0, smoothing.ESTIMATE),
                                   batch_size=200)
    assert counts.sum() == 1_050 and counts[1] == whole.count[0]


def test_certified_accuracy_counts_abstentions_as_wrong_and_acr_averages_the_right():
    certificates = smoothing.Certificates(np.array([1, 0, smoothing.ABSTAIN, 1]), np.array([0.5, 0.3, 0.0, 1.2]),
                                          np.zeros(4), np.zeros(4, int), np.zeros(4))
    labels = np.array([1, 1, 0, 1])
    table = smoothing.certified_accuracy(certificates, labels, [0.0, 0.5, 1.0, 1.5])
    assert list(table["certified_accuracy"]) == [0.5, 0.5, 0.25, 0.0]
    assert smoothing.average_certified_radius(certificates, labels) == pytest.approx((0.5 + 1.2) / 4)


@pytest.mark.parametrize("values, message", [
    ({"sigma": 0.0}, "sigma must be a finite number > 0"),
    ({"sigma": 0.25, "n": 0}, "n must be in 1..10000000"),
    ({"sigma": 0.25, "alpha": 0.5}, "alpha must be in (0, 0.5)"),
    ({"sigma": "big"}, "sigma must be a number, got 'big'"),
    ({"sigma": 0.25, "n": "many"}, "n must be a whole number, got 'many'"),
    ({"sigma": 0.25, "n0": True}, "n0 must be a whole number, got True"),
])
def test_bad_settings_say_what_is_wrong(values, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        smoothing.Smoothing(**values)


def test_the_modes_are_the_papers_and_a_quick_one():
    assert smoothing.Smoothing.of_mode("paper", 0.25) == smoothing.Smoothing(0.25, n0=100, n=100_000, alpha=0.001)
    assert smoothing.Smoothing.of_mode("quick", 0.5, n=2_000).n == 2_000
    assert sampling.default_batch((28, 28, 1)) == 10_000 and sampling.default_batch((224, 224, 3)) == 100


def test_the_cli_writes_each_images_certificate_and_the_summary(tmp_path, capsys):
    from advcore.cli.main import main

    model = ROOT / "assets" / "models" / "pgd-linf" / "model.keras"
    assert main(["certify", "--model", str(model), "--sigma", "0.25", "--n0", "50", "--n", "300", "--count", "4",
                 "--start", "3", "--every", "20", "--radii", "0,0.5", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "certificates.csv")
    assert list(table["image"]) == [3, 23, 43, 63]
    assert list(table.columns) == ["image", "label", "prediction", "radius", "p_lower", "count", "seconds"]
    abstained = table["prediction"] == smoothing.ABSTAIN
    assert (table.loc[abstained, "radius"] == 0).all() and (table.loc[~abstained, "radius"] > 0).all()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"] == {"sigma": 0.25, "n0": 50, "n": 300, "alpha": 0.001, "seed": 0}
    right = table["prediction"] == table["label"]
    assert summary["certified_accuracy"][0] == {"radius": 0.0, "certified_accuracy": right.mean()}
    assert summary["abstention_rate"] == abstained.mean()
    assert "certified accuracy at r = 0.5" in capsys.readouterr().out
    assert main(["certify", "--model", str(model), "--sigma", "0.25", "--start", "9990", "--count", "20",
                 "--out", str(tmp_path / "none")]) == 2
    assert "outside the test split's 0..9999" in capsys.readouterr().err


def test_ibm_arts_randomized_smoothing_agrees_within_sampling_error(fashion):
    """ART's TensorFlowV2RandomizedSmoothing draws its own noise in NumPy: on 200 images, the same
    sigma, n0, n and alpha, the classes agree wherever either side is clear of abstaining, and the
    radii within five standard errors of their counts."""
    art = pytest.importorskip("art.estimators.certification.randomized_smoothing")
    model = models.load(ROOT / "assets" / "models" / "standard" / "model.keras")
    setting = smoothing.Smoothing(0.25, n0=100, n=1_000, alpha=0.001)
    x = fashion.test.x[:200]
    ours = smoothing.certify(model, x, setting)
    theirs = art.TensorFlowV2RandomizedSmoothing(model, nb_classes=10, input_shape=(28, 28, 1), sample_size=100,
                                                 scale=0.25, alpha=0.001)
    np.random.seed(0)
    prediction, radius = theirs.certify(x, n=1_000, batch_size=1_000)
    p = np.clip(ours.count / setting.n, 1e-3, 1 - 1e-3)
    slack = 5 * setting.sigma * np.sqrt(p * (1 - p) / setting.n) / stats.norm.pdf(stats.norm.ppf(p))
    clear = ours.p_lower - 5 * np.sqrt(p * (1 - p) / setting.n) > 0.5
    assert clear.sum() > 100
    np.testing.assert_array_equal(prediction[clear], ours.prediction[clear])
    both = clear & (prediction == ours.prediction)
    assert np.all(np.abs(radius[both] - ours.radius[both]) <= slack[both] + 1e-9)
    assert np.mean(prediction == ours.prediction) > 0.95


STANDARD = str(ROOT / "assets" / "models" / "standard" / "model.keras")


def certify_plan(**options) -> plans.Plan:
    return plans.Plan.from_dict({
        "models": [{"label": "standard", "path": STANDARD}],
        "attacks": [{"name": "pgd", "method": "pgd", "options": {"norm": "l2", "steps": 5}},
                    {"name": "certified", "method": "certify", "options": {"sigma": 0.25, "n0": 50, "n": 200} | options}],
        "eps": {"l2": [0.5, 0.0, 0.25]}, "count": 60, "sanity": True})


def test_a_plans_certified_cells_read_one_certificate_per_image_at_each_radius_split_or_whole(tmp_path):
    plan = certify_plan()
    outcome, results = plans.run_plan(plan, tmp_path)
    assert outcome == "finished" and plans.checked_after(plan) == (plan.attacks[0], 0.5)  # the attack's checks
    images = plans.test_images(plan, models.load, data.load)
    direct = smoothing.certify(models.load(STANDARD), images.x, smoothing.Smoothing(0.25, n0=50, n=200))
    y = images.y
    certified = [row for row in results.rows if row["attack"] == "certified"]
    assert [row["eps"] for row in certified] == [0.0, 0.25, 0.5] and {row["norm"] for row in certified} == {"l2"}
    for row in certified:
        assert row["robust_accuracy"] == np.mean((direct.prediction == y) & (direct.radius >= row["eps"]))
    work = plans.plan_work(plan, 60, 10)
    assert [work["standard", "certified", r].cost for r in (0.0, 0.25, 0.5)] == [60 * 250, 0, 0]
    unchecked = dataclasses.replace(plan, sanity=False)
    parts = [shards.measure_shard(unchecked, first, last, load_model=models.load, load_dataset=data.load,
                                  report=lambda progress: None, should_stop=lambda: False)
             for first, last in ((0, 23), (23, 60))]
    _, merged = shards.merge(unchecked, images, parts, {}, tmp_path / "merged")
    assert [row["robust_accuracy"] for row in merged.rows if row["attack"] == "certified"] == \
        [row["robust_accuracy"] for row in certified]


@pytest.mark.parametrize("options, message", [
    ({"sigma": None}, "certify needs the option sigma"),
    ({"steps": 5}, "certify takes the options sigma, mode, n0, n and alpha, not steps"),
    ({"mode": "slow"}, "mode must be one of quick, paper"),
    ({"alpha": 0.7}, "alpha must be in"),
    ({"sigma": [0.25]}, "sigma must be a number"),
    ({"mode": ["quick"]}, "mode must be one of quick, paper"),
])
def test_a_plans_bad_certify_options_say_what_is_wrong(options, message):
    with pytest.raises(plans.PlanError, match=message):
        certify_plan(**options) if options.get("sigma", 0) is not None else plans.Plan.from_dict({
            "models": [{"label": "standard", "path": STANDARD}],
            "attacks": [{"name": "certified", "method": "certify", "options": {}}], "eps": {"l2": [0.5]}})
