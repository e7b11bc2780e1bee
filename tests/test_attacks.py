"""Attack properties (reference.md section 3) for every attack and both norms, plus exact cases."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from advcore import attacks, models

LINF_EPS, L2_EPS = 0.1, 1.5

# name -> (spec builder taking eps, needs target classes)
CASES = {
    "fgsm": (lambda e: attacks.fgsm(e), False),
    "fgsm_random_start": (lambda e: attacks.fgsm(e, random_start=True), False),
    "fgm_l2": (lambda e: attacks.fgm(e, scaling="l2"), False),
    "fgm_max": (lambda e: attacks.fgm(e, scaling="max"), False),
    "fgm_raw": (lambda e: attacks.fgm(e, scaling="raw", step_size=50.0), False),
    "pgd_linf": (lambda e: attacks.pgd(e, steps=10), False),
    "pgd_l2": (lambda e: attacks.pgd(e, norm="l2", steps=10), False),
    "pgd_linf_restarts": (lambda e: attacks.pgd(e, steps=5, restarts=3), False),
    "pgd_l2_restarts": (lambda e: attacks.pgd(e, norm="l2", steps=5, restarts=3), False),
    "pgd_margin": (lambda e: attacks.pgd(e, steps=10, loss="margin"), False),
    "pgd_early_stop": (lambda e: attacks.pgd(e, steps=10, early_stop=True), False),
    "pgd_targeted": (lambda e: attacks.pgd(e, steps=10, target="targeted"), True),
    "pgd_l2_targeted_margin": (lambda e: attacks.pgd(e, norm="l2", steps=10, target="targeted",
                                                     loss="margin"), True),
    "least_likely": (lambda e: attacks.pgd(e, steps=10, target="least_likely"), False),
    "mifgsm_linf": (lambda e: attacks.mifgsm(e), False),
    "mifgsm_l2": (lambda e: attacks.mifgsm(e, norm="l2"), False),
    "mifgsm_early_stop": (lambda e: attacks.mifgsm(e, early_stop=True), False),
    "pgd_l2_restarts_early_stop": (lambda e: attacks.pgd(e, norm="l2", steps=5, restarts=3, early_stop=True),
                                   False),
}


def _eps_for(spec_builder):
    return L2_EPS if spec_builder(1.0).norm == "l2" else LINF_EPS


def _run(model, x, y, name, eps=None, **kwargs):
    builder, targeted = CASES[name]
    spec = builder(_eps_for(builder) if eps is None else eps)
    target = (y + 1) % 10 if targeted else None
    return spec, attacks.attack(model, x, y, spec, target=target, **kwargs)


@pytest.fixture(scope="module")
def batch(fashion):
    return fashion.test.x[:200], fashion.test.y[:200]


@pytest.mark.parametrize("name", CASES)
def test_bound_range_and_reported_norms(trained_model, batch, name):
    x, y = batch
    spec, result = _run(trained_model, x, y, name)
    delta = (result.x_adv - x).reshape(len(x), -1)
    if spec.norm == "linf":
        assert np.abs(delta).max(axis=1).max() <= spec.eps + 1e-6
    else:
        assert np.linalg.norm(delta, axis=1).max() <= spec.eps * (1 + 1e-5) + 1e-6
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    assert result.x_adv.dtype == np.float32 and result.x_adv.shape == x.shape
    np.testing.assert_allclose(result.linf, np.abs(delta).max(axis=1), atol=1e-6)
    np.testing.assert_allclose(result.l2, np.linalg.norm(delta, axis=1), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_success_matches_the_model_on_the_returned_images(trained_model, batch, name):
    x, y = batch
    spec, result = _run(trained_model, x, y, name)
    predictions = np.argmax(trained_model.predict(result.x_adv, verbose=0), axis=1)
    np.testing.assert_array_equal(predictions, result.predictions)
    expected = predictions == result.labels if spec.targeted else predictions != y
    np.testing.assert_array_equal(result.success, expected)


@pytest.mark.parametrize("name", CASES)
def test_zero_eps_returns_the_input_and_input_is_never_mutated(trained_model, batch, name):
    x, y = batch
    frozen = x.copy()
    frozen.setflags(write=False)  # any in-place write would raise
    _, result = _run(trained_model, frozen, y, name, eps=0.0)
    np.testing.assert_array_equal(result.x_adv, x)
    np.testing.assert_array_equal(frozen, x)
    np.testing.assert_array_equal(result.predictions, result.clean_predictions)


@pytest.mark.parametrize("name", ["fgsm", "fgm_l2", "pgd_linf", "pgd_l2", "pgd_margin", "mifgsm_linf",
                                  "pgd_linf_restarts"])
def test_untargeted_attacks_cut_accuracy_well_below_clean(trained_model, batch, name):
    x, y = batch
    _, result = _run(trained_model, x, y, name)
    clean = np.mean(result.clean_predictions == y)
    adversarial = np.mean(result.predictions == y)
    assert clean > 0.75
    assert adversarial < 0.5 * clean


def test_targeted_attack_reaches_its_target(trained_model, batch):
    x, y = batch
    _, result = _run(trained_model, x, y, "pgd_targeted", eps=0.2)
    assert result.success.mean() > 0.8
    np.testing.assert_array_equal(result.labels, (y + 1) % 10)


def test_least_likely_targets_the_least_likely_clean_class(trained_model, batch):
    x, y = batch
    _, result = _run(trained_model, x, y, "least_likely")
    least = np.argmin(trained_model.predict(x, verbose=0), axis=1)
    np.testing.assert_array_equal(result.labels, least)


def test_pgd_is_at_least_as_strong_as_fgsm(trained_model, batch):
    x, y = batch
    _, one_step = _run(trained_model, x, y, "fgsm")
    _, multi = _run(trained_model, x, y, "pgd_linf")
    assert multi.success.mean() >= one_step.success.mean()


def test_restarts_keep_the_best_per_sample(trained_model, batch):
    x, y = batch
    one = attacks.attack(trained_model, x, y, attacks.pgd(0.05, steps=5, restarts=1), seed=3)
    many = attacks.attack(trained_model, x, y, attacks.pgd(0.05, steps=5, restarts=4), seed=3)
    assert np.all(many.success >= one.success)  # the first restart is shared, so never worse
    never = ~one.success & ~many.success
    assert np.all(many.loss[never] >= one.loss[never] - 1e-5)


def test_early_stop_never_reports_a_sample_robust_that_the_full_attack_fools(trained_model, batch):
    x, y = batch
    full = attacks.attack(trained_model, x, y, attacks.pgd(0.05, steps=10, restarts=2))
    early = attacks.attack(trained_model, x, y, attacks.pgd(0.05, steps=10, restarts=2, early_stop=True))
    assert np.all(early.success >= full.success)


def test_same_seed_same_result_other_seed_other_start(trained_model, batch):
    x, y = batch
    spec = attacks.pgd(0.1, steps=3)
    a = attacks.attack(trained_model, x, y, spec, seed=1)
    b = attacks.attack(trained_model, x, y, spec, seed=1)
    c = attacks.attack(trained_model, x, y, spec, seed=2)
    np.testing.assert_array_equal(a.x_adv, b.x_adv)
    assert not np.array_equal(a.x_adv, c.x_adv)


@pytest.mark.parametrize("early_stop", [False, True])
def test_a_samples_attack_does_not_depend_on_its_batch(trained_model, batch, early_stop):
    """Random starts hang on (seed, row, restart) alone, so batching changes nothing."""
    x, y = batch
    spec = attacks.pgd(0.1, steps=5, restarts=2, early_stop=early_stop)
    whole = attacks.attack(trained_model, x, y, spec, batch_size=200)
    pieces = attacks.attack(trained_model, x, y, spec, batch_size=37)
    np.testing.assert_array_equal(whole.success, pieces.success)
    np.testing.assert_allclose(whole.x_adv, pieces.x_adv, atol=1e-5)


def test_attacks_leave_the_weights_alone(trained_model, batch):
    before = [w.copy() for w in trained_model.get_weights()]
    _run(trained_model, *batch, "pgd_linf")
    for old, new in zip(before, trained_model.get_weights()):
        np.testing.assert_array_equal(old, new)


# ----------------------------------------------------------------------------- closed form

def _weight_gap(weights, y):
    """w_label - w_other per sample, flattened, for the two-class linear model."""
    return (weights[:, y] - weights[:, 1 - y]).T


def test_fgsm_on_a_linear_model_is_the_exact_linf_optimum(linear_pair):
    model, weights, _, x, y = linear_pair
    result = attacks.attack(model, x, y, attacks.fgsm(0.1))
    expected = -0.1 * np.sign(_weight_gap(weights, y))
    np.testing.assert_allclose((result.x_adv - x).reshape(len(x), -1), expected, atol=1e-6)


def test_l2_gradient_step_on_a_linear_model_is_the_exact_l2_optimum(linear_pair):
    model, weights, _, x, y = linear_pair
    result = attacks.attack(model, x, y, attacks.fgm(0.25, scaling="l2"))
    gap = _weight_gap(weights, y)
    expected = -0.25 * gap / np.linalg.norm(gap, axis=1, keepdims=True)
    np.testing.assert_allclose((result.x_adv - x).reshape(len(x), -1), expected, atol=1e-6)


@pytest.mark.parametrize("norm, dual", [("linf", 1), ("l2", 2)])
def test_robust_accuracy_of_a_linear_model_matches_the_closed_form(linear_pair, norm, dual):
    """A sample survives radius eps iff its margin exceeds eps * ||w_label - w_other||_dual."""
    model, weights, bias, x, y = linear_pair
    gap = _weight_gap(weights, y)
    margins = np.einsum("nd,nd->n", x.reshape(len(x), -1), gap) + (bias[y] - bias[1 - y])
    radius = margins / np.linalg.norm(gap, ord=dual, axis=1)
    eps = float(np.quantile(radius, 0.3))  # a third of the samples should flip
    result = attacks.attack(model, x, y, attacks.pgd(eps, norm=norm, steps=10, random_start=False))
    optimum = eps * (np.sign(gap) if norm == "linf" else gap / np.linalg.norm(gap, axis=1, keepdims=True))
    inside_box = np.abs(optimum).max(axis=1) < 0.3  # inputs lie in 0.5 +- 0.2: the box never binds
    clear = inside_box & (np.abs(radius - eps) > 1e-3 * eps)  # and none sits on the boundary
    assert clear.sum() >= 20
    np.testing.assert_array_equal(result.success[clear], (radius < eps)[clear])


def test_pgd_on_a_linear_model_converges_to_the_vertex(linear_pair):
    model, weights, _, x, y = linear_pair
    result = attacks.attack(model, x, y, attacks.pgd(0.1, steps=10, step_size=0.02, random_start=False,
                                                     loss="margin"))
    expected = -0.1 * np.sign(_weight_gap(weights, y))
    np.testing.assert_allclose((result.x_adv - x).reshape(len(x), -1), expected, atol=1e-6)


def test_a_step_budget_below_eps_does_not_reach_eps(linear_pair):
    model, _, _, x, y = linear_pair
    result = attacks.attack(model, x, y, attacks.pgd(0.1, steps=3, step_size=0.01, random_start=False))
    np.testing.assert_allclose(result.linf, 0.03, atol=1e-6)


def test_perturb_for_training_is_cut_from_the_weight_gradient(trained_model, batch):
    """The training-time attack returns a constant: no gradient reaches the weights through it."""
    x, y = (tf.constant(a[:32]) for a in batch)
    spec = attacks.pgd(0.1, steps=3)
    with tf.GradientTape() as tape:
        x_adv = attacks.perturb(trained_model, spec, x, y, 0.1, 0.04, 3, tf.constant([0, 0]))
        total = tf.reduce_sum(x_adv)
    assert tape.gradient(total, trained_model.trainable_variables)[0] is None
    assert float(tf.reduce_max(tf.abs(x_adv - x))) <= 0.1 + 1e-6


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("options, message", [
    ({"eps": -0.1}, "eps must be a finite number >= 0"),
    ({"eps": float("nan")}, "eps must be a finite number"),
    ({"eps": 0.1, "steps": 0}, "steps must be an integer in \\[1, 10000\\], got 0"),
    ({"eps": 0.1, "steps": 2.5}, "steps must be an integer"),
    ({"eps": 0.1, "norm": "l3"}, "unknown norm 'l3'"),
    ({"eps": 0.1, "step_size": -1.0}, "step_size must be a finite number > 0"),
    ({"eps": 0.1, "step_size": 0.5}, "exceeds the ball's diameter"),
    ({"eps": 0.1, "scaling": "abs"}, "unknown scaling 'abs'"),
    ({"eps": 0.1, "scaling": "raw"}, "scaling 'raw' needs an explicit step_size"),
    ({"eps": 0.1, "restarts": 0}, "restarts must be an integer in \\[1, 100\\], got 0"),
    ({"eps": 0.1, "restarts": 3}, "restarts > 1 need random_start=True"),
    ({"eps": 0.1, "momentum": 1.5}, "momentum must lie in"),
    ({"eps": 0.1, "loss": "hinge"}, "unknown loss 'hinge'"),
    ({"eps": 0.1, "target": "random"}, "unknown target mode 'random'"),
    ({"eps": 0.1, "clip_min": 1.0, "clip_max": 0.0}, "clip_min must be below clip_max"),
])
def test_bad_specs_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        attacks.AttackSpec(**options)


@pytest.mark.parametrize("mangle, message", [
    (lambda x, y: ((x * 255).astype(np.uint8), y), "images are uint8"),
    (lambda x, y: (x * 255, y), r"must lie in \[0.0, 1.0\].*divide"),
    (lambda x, y: (x[0], y), r"for one image use x\[None\]"),
    (lambda x, y: (x[:0], y[:0]), "holds no images"),
    (lambda x, y: (np.where(x > 0.5, np.nan, x), y), "NaN"),
    (lambda x, y: (x, np.eye(10)[y]), "not one-hot"),
    (lambda x, y: (x, y[:-1]), r"labels must have shape \(8,\)"),
    (lambda x, y: (x, y + 10), r"labels must lie in 0..9"),
    (lambda x, y: (x, y.astype(np.float32)), "integer class indices"),
    (lambda x, y: (np.zeros((8, 32, 32, 3), np.float32), y), "takes inputs of shape"),
])
def test_bad_inputs_are_refused(trained_model, batch, mangle, message):
    x, y = mangle(batch[0][:8], batch[1][:8])
    with pytest.raises(ValueError, match=message):
        attacks.attack(trained_model, x, y, attacks.fgsm(0.1))


def test_target_mode_and_target_argument_must_agree(trained_model, batch):
    x, y = batch[0][:8], batch[1][:8]
    with pytest.raises(ValueError, match="needs target classes"):
        attacks.attack(trained_model, x, y, attacks.pgd(0.1, target="targeted"))
    with pytest.raises(ValueError, match="target classes were given"):
        attacks.attack(trained_model, x, y, attacks.pgd(0.1), target=3)
    with pytest.raises(ValueError, match=r"target must lie in 0..9"):
        attacks.attack(trained_model, x, y, attacks.pgd(0.1, target="targeted"), target=12)
    with pytest.raises(ValueError, match="batch_size must be"):
        attacks.attack(trained_model, x, y, attacks.fgsm(0.1), batch_size=0)


@pytest.mark.parametrize("method, options, expected", [
    ("fgsm", {}, {"norm": "linf", "steps": 1, "effective_scaling": "sign"}),
    ("fgm", {"scaling": "l2"}, {"norm": "l2", "steps": 1, "effective_scaling": "l2"}),
    ("fgm", {"scaling": "max"}, {"norm": "linf", "effective_scaling": "max"}),
    ("pgd", {"norm": "l2", "steps": 7}, {"norm": "l2", "steps": 7, "random_start": True}),
    ("mifgsm", {}, {"steps": 10, "momentum": 1.0}),
])
def test_build_names_the_presets(method, options, expected):
    spec = attacks.build(method, 0.1, **options)
    assert {field: getattr(spec, field) for field in expected} == expected


@pytest.mark.parametrize("method, options, message", [
    ("fgsm", {"steps": 5}, "fgsm takes one step"),
    ("cw", {}, "unknown attack method 'cw'"),
    ("fgm", {"scaling": "raw"}, "needs an explicit step_size"),
])
def test_build_refuses_what_cannot_run(method, options, message):
    with pytest.raises(ValueError, match=message):
        attacks.build(method, 0.1, **options)


def test_attacking_in_slices_with_offsets_equals_attacking_whole(trained_model, fashion):
    x, y = fashion.test.x[:12], fashion.test.y[:12]
    spec = attacks.pgd(0.05, steps=5, restarts=2)
    whole = attacks.attack(trained_model, x, y, spec, seed=2)
    parts = [attacks.attack(trained_model, x[i:i + 5], y[i:i + 5], spec, seed=2, first_index=i) for i in (0, 5, 10)]
    np.testing.assert_allclose(np.concatenate([p.x_adv for p in parts]), whole.x_adv, atol=1e-6)


def test_attack_gradients_survive_mixed_precision(trained_model, fashion):
    """Confident images have loss gradients too small for float16: taken naively through a
    mixed_float16 copy of the model most are zero; AdvLab's stay those of the float32 model."""
    from advcore.attacks import precision, rmse_descent

    weights = trained_model.get_weights()
    weights[-2], weights[-1] = weights[-2] * 30, weights[-1] * 30  # very confident logits
    confident = models.small_cnn()
    confident.set_weights(weights)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        half = models.small_cnn()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    half.set_weights(weights)
    assert precision.computes_in_half(half) and not precision.computes_in_half(confident)
    x, y = tf.constant(fashion.test.x[:64]), tf.constant(fashion.test.y[:64])
    spec = attacks.fgsm(0.1)
    exact = attacks.input_gradient(confident, spec, x, y)[0].numpy()
    ours = attacks.input_gradient(half, spec, x, y)[0].numpy()
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(attacks.objective(half(x), y, "ce", False))
    naive = tape.gradient(total, x).numpy()

    def zero_rows(gradient):
        return int(np.sum(np.all(gradient == 0, axis=(1, 2, 3))))
    assert zero_rows(naive) > zero_rows(exact) + 10
    assert zero_rows(ours) <= zero_rows(exact)
    moving = exact != 0
    assert np.mean(np.sign(ours[moving]) == np.sign(exact[moving])) > 0.98
    assert np.linalg.norm(ours - exact) < 0.05 * np.linalg.norm(exact)
    # seed 004's training attack takes the same path: float16 moves the images float32 moves
    moved = rmse_descent.ball_examples(half, x, y, 0.01, 3).numpy() - fashion.test.x[:64]
    reference = rmse_descent.ball_examples(confident, x, y, 0.01, 3).numpy() - fashion.test.x[:64]
    assert zero_rows(moved) <= zero_rows(reference)
