"""Activation maximisation, traversal, explanations, ARA and the judge: closed forms and real models."""

import dataclasses
from pathlib import Path

import imageio.v3 as iio
import keras
import numpy as np
import pandas as pd
import pytest

from advcore import models
from advcore.evaluation import profile
from advcore.interpret import alignment, explain, gradient_ascent, video
from advcore.storage import images

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "assets" / "models"


@pytest.fixture(scope="module")
def robust():
    return models.load(BUNDLED / "pgd-linf" / "model.keras")


def linear_model(weights):
    """z = W x on 4x4x1 images: every distance to a decision boundary is known in closed form."""
    inputs = keras.Input((4, 4, 1))
    layer = keras.layers.Dense(weights.shape[1], use_bias=False)
    model = keras.Model(inputs, layer(keras.layers.Flatten()(inputs)))
    layer.set_weights([weights])
    return model


def closed_form_rmse(weights, x, y):
    """The smallest perturbation that changes a linear model's class, as RMSE: the nearest facet."""
    logits = x.reshape(len(x), -1) @ weights
    distances = [min((logits[i, y[i]] - logits[i, k]) / np.linalg.norm(weights[:, y[i]] - weights[:, k])
                     for k in range(weights.shape[1]) if k != y[i]) for i in range(len(x))]
    return np.array(distances) / np.sqrt(x[0].size)


# ----------------------------------------------------------------------------- activation maximisation

def test_small_steps_raise_the_target_logit_monotonically():
    keras.utils.set_random_seed(3)
    model = models.small_cnn()
    settings = gradient_ascent.Ascent(steps=60, step_size=0.002, record_every=1)
    result = gradient_ascent.maximal_activations(model, range(10), settings, start="noise", seed=1)
    logits = result.target_logits
    assert result.frames.shape == (61, 10, 28, 28, 1)
    assert np.all(np.diff(logits, axis=0) >= -1e-4), "a step lowered a target logit"
    assert np.all(logits[-1] > logits[0] + 0.01)


def test_frames_are_recorded_every_n_steps_and_at_the_last_step(trained_model):
    settings = gradient_ascent.Ascent(steps=25, step_size=0.01, record_every=10)
    result = gradient_ascent.maximal_activations(trained_model, [0, 3], settings)
    assert result.steps == [0, 10, 20, 25] and result.frames.shape[:2] == (4, 2)
    again = gradient_ascent.maximal_activations(trained_model, [0, 3], settings.replace(record_every=5))
    np.testing.assert_allclose(again.images, result.images, atol=1e-5)  # chunking does not change the path


def test_penalties_jitter_and_blur_keep_images_valid_and_smoother(trained_model):
    plain = gradient_ascent.Ascent(steps=100, step_size=0.05)
    smooth = plain.replace(blur_every=5, tv=4.0, jitter_every=7)
    rough = gradient_ascent.maximal_activations(trained_model, range(10), plain).images
    soft = gradient_ascent.maximal_activations(trained_model, range(10), smooth).images
    assert rough.min() >= 0 and rough.max() <= 1 and soft.min() >= 0 and soft.max() <= 1
    variation = {name: gradient_ascent.total_variation(images).numpy().mean()
                 for name, images in (("soft", soft), ("rough", rough))}
    assert variation["soft"] < 0.7 * variation["rough"]


def test_blur_keeps_a_flat_image_and_total_variation_has_its_closed_form():
    flat = np.full((1, 5, 5, 1), 0.3, np.float32)
    np.testing.assert_allclose(gradient_ascent.blur(flat).numpy(), flat, atol=1e-6)
    stripes = np.zeros((1, 4, 4, 1), np.float32)
    stripes[:, :, ::2] = 1.0  # columns alternate: every horizontal neighbour differs by 1, no vertical one
    assert gradient_ascent.total_variation(stripes).numpy()[0] == pytest.approx(1.0)


def test_starts_and_bad_settings_are_explained(trained_model, fashion):
    mean = gradient_ascent.starting_images("mean", (28, 28, 1), 3, images=fashion.train.x[:100])
    assert mean.shape == (3, 28, 28, 1) and np.all(mean[0] == mean[2])
    with pytest.raises(ValueError, match="needs images"):
        gradient_ascent.starting_images("mean", (28, 28, 1), 3)
    for bad, message in (({"steps": 0}, "steps"), ({"direction": "up"}, "direction"), ({"norm": "l2"}, "eps > 0"),
                         ({"tv": -1.0}, "tv")):
        with pytest.raises(ValueError, match=message):
            gradient_ascent.Ascent(**bad)
    with pytest.raises(ValueError, match="target class"):
        gradient_ascent.maximal_activations(trained_model, [10], gradient_ascent.Ascent(steps=1))


# ----------------------------------------------------------------------------- class traversal

def test_traversal_reaches_the_target_on_a_robust_model_and_stays_in_range(robust, fashion):
    image, label = fashion.test.x[0], int(fashion.test.y[0])
    target = (label + 3) % 10
    result = gradient_ascent.traverse(robust, image, target)
    assert result.frames.shape[0] == 401 and result.steps[-1] == 400
    assert result.frames.min() >= 0 and result.frames.max() <= 1
    assert int(result.logits[-1, 0].argmax()) == target
    np.testing.assert_array_equal(result.frames[0, 0], image)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.5)])
def test_a_traversal_budget_holds(robust, fashion, norm, eps):
    image = fashion.test.x[1]
    settings = gradient_ascent.TRAVERSAL.replace(steps=60, norm=norm, eps=eps, record_every=20)
    delta = gradient_ascent.traverse(robust, image, 4, settings).frames[:, 0] - image
    size = np.abs(delta).max(axis=(1, 2, 3)) if norm == "linf" else np.sqrt((delta ** 2).sum(axis=(1, 2, 3)))
    assert size.max() <= eps * (1 + 1e-5)


def test_traversal_video_and_gif_have_the_frames_asked_for(robust, fashion, tmp_path):
    result = gradient_ascent.traverse(robust, fashion.test.x[2], 1, gradient_ascent.TRAVERSAL.replace(steps=30))
    frames = video.traversal_frames(result, fashion.class_names)
    assert len(frames) == 31 and frames[0].shape == (28 * 8 + video.CAPTION_HEIGHT, 28 * 8, 3)
    mp4 = iio.imread(video.encode_mp4(frames), index=None, extension=".mp4")
    assert mp4.shape == (31, 272, 224, 3)
    gif = iio.imread(images.encode_gif(frames), index=None, extension=".gif")
    assert gif.shape[0] == 31
    assert not np.array_equal(frames[0][:video.CAPTION_HEIGHT], frames[-1][:video.CAPTION_HEIGHT])  # captions, on top


@pytest.mark.parametrize("count, kept, fps", [(401, 201, 25.125), (31, 31, 4.0), (100, 100, 12.5), (241, 121, 15.125)])
def test_a_traversal_plays_in_about_eight_seconds_whatever_its_length(count, kept, fps):
    frames = [np.full((2, 2, 1), i, np.float32) for i in range(count)]
    shown, rate = video.paced(frames)
    assert (len(shown), rate) == (kept, fps)
    assert shown[0][0, 0, 0] == 0 and shown[-1][0, 0, 0] == count - 1  # the start and the end stay


# ----------------------------------------------------------------------------- explanations

def test_explanations_respect_rho_and_raise_their_target(robust, fashion, tmp_path):
    image, label = fashion.test.x[3], int(fashion.test.y[3])
    result = explain.explain(robust, image, label, rho=0.05)
    assert result.targets[0] == label and result.targets[1] != label and result.targets[2:] == list(range(10))
    assert np.all(explain.rmse(result.explanations - image) <= 0.05 + 1e-6)
    assert result.explanations.min() >= 0 and result.explanations.max() <= 1
    raised = result.after > result.confidence[result.targets] - 1e-6
    assert raised.mean() >= 0.9, f"explanations should raise their class's confidence: {raised}"
    folder = result.write(tmp_path / "expl", fashion.class_names)
    names = sorted(p.name for p in folder.iterdir())
    assert "_input.png" in names and len(names) == 13
    assert f"_real_was_{result.confidence[label]:.3f}.png" in names
    assert any(n.startswith("_second_") for n in names) and "0_T-shirt-top_was_" in " ".join(names)


# ----------------------------------------------------------------------------- ARA

def linear_problem(classes: int, seed: int):
    """Random weights and 40 inputs near 0.5 (the [0, 1] box never binds), labelled as the model says."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(16, classes)).astype(np.float32) * 0.5
    x = rng.uniform(0.4, 0.6, (40, 4, 4, 1)).astype(np.float32)
    y = (x.reshape(40, -1) @ weights).argmax(axis=1)
    return weights, x, y, closed_form_rmse(weights, x, y)


def test_ara_finds_the_closed_form_distance_of_a_two_class_linear_model():
    weights, x, y, exact = linear_problem(classes=2, seed=0)
    for criterion in ("attack", "btr"):  # with two classes, p(true) <= 1/2 is the same boundary
        found = explain.minimal_perturbations(linear_model(weights), x, y, criterion)
        assert np.all(found >= exact * (1 - 1e-4)), "no perturbation can beat the closed-form minimum"
        np.testing.assert_allclose(found, exact, rtol=0.03)


def test_ara_never_beats_the_closed_form_minimum_with_more_classes():
    weights, x, y, exact = linear_problem(classes=4, seed=1)
    found = explain.minimal_perturbations(linear_model(weights), x, y, "attack")
    assert np.all(found >= exact * (1 - 1e-4)) and np.all(found <= exact * 1.35)


def test_misclassified_images_count_zero_and_the_area_is_exact():
    weights = np.array([[1.0, -1.0]] * 16, np.float32)
    x = np.full((2, 4, 4, 1), 0.5, np.float32)
    found = explain.minimal_perturbations(linear_model(weights), x, [1, 0], "attack", steps=20)
    assert found[0] == 0 and found[1] > 0
    # A(r) = 3/4, 2/4, 1/4 on [0, .1), [.1, .2), [.2, .3); minus 1/2: only the first interval counts.
    assert explain.area([0.0, 0.1, 0.2, 0.3], 2) == pytest.approx(0.025)
    assert explain.area([0.1, 0.2, np.inf], 10) == pytest.approx(0.1 * (1 - 0.1) + 0.1 * (2 / 3 - 0.1))


def test_ara_ranks_the_robust_model_above_the_standard_one(robust, fashion):
    standard = models.load(BUNDLED / "standard" / "model.keras")
    x, y = fashion.test.x[:100], fashion.test.y[:100]
    weak = explain.ara(standard, x, y, steps=150)
    strong = explain.ara(robust, x, y, steps=150)
    assert strong.attack_ara > 1.5 * weak.attack_ara and strong.btr_ara > strong.attack_ara
    curve = strong.curve()
    assert curve["attack_accuracy"].iloc[0] == pytest.approx(strong.accuracy)
    assert curve["attack_accuracy"].is_monotonic_decreasing


# ----------------------------------------------------------------------------- the judge and profiles

def test_the_judge_scores_real_images_above_noise(fashion):
    judge = models.load(alignment.judge_path("fashion_mnist"))
    real = alignment.score(judge, fashion.test.x[:300], fashion.test.y[:300])
    noise = np.random.default_rng(0).uniform(0, 1, (300, 28, 28, 1)).astype(np.float32)
    fake = alignment.score(judge, noise, fashion.test.y[:300])
    assert real["judge_accuracy"] > 0.75 and fake["judge_accuracy"] < 0.3
    assert real["judge_confidence"] > fake["judge_confidence"] + 0.4
    assert real["total_variation"] < fake["total_variation"] / 2


def test_a_profile_measured_in_parts_is_the_whole_one_and_is_saved_once_per_model_file_and_settings(trained_model, robust, fashion, tmp_path):
    settings = profile.ProfileSettings(count=30, eps=(0.0, 0.1), ara_steps=40, ara_batch=11, traversals=5)
    assert profile.ranges(settings, 2) == [(0, 22), (22, 30)] and len(profile.ranges(settings, 5)) == 3
    stages = []
    figures, pictures, table = profile.compute(trained_model, fashion, settings, judge=robust,
                                               report=lambda stage, fraction: stages.append((stage, fraction)))
    assert [stage for stage, _ in stages[1:6]] == ["AutoAttack"] + [f"AutoAttack: {member} done" for member in (
        "apgd-ce", "apgd-t", "fab-t", "square")]
    assert stages[-1] == ("done", 1.0) and [f for _, f in stages] == sorted(f for _, f in stages)
    assert [p["eps"] for p in figures["curve"]] == [0.0, 0.1]
    assert figures["curve"][1]["robust_accuracy"] <= figures["clean_accuracy"]
    strongest = figures["autoattack"]
    assert strongest["eps"] == 0.1 and strongest["robust_accuracy"] <= figures["curve"][1]["robust_accuracy"]
    assert list(strongest["accuracy_after"]) == ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]
    assert pictures["activations"].shape == (10, 28, 28, 1) and pictures["traversals"].shape == (5, 28, 28, 1)
    assert set(figures["alignment"]) == {"activations", "traversals", "test_images"} and len(table) == 30
    # measured in two ranges of the sample (as a cluster's shards are), the figures are the same
    images = profile.sample(fashion, settings)
    parts = [profile.measure_images(trained_model, images.x[first:last], images.y[first:last], settings,
                                    first_index=first, report=lambda stage, fraction: None)
             for first, last in profile.ranges(settings, 2)]
    drawn = profile.Pictures(pictures["activations"], pictures["traversals"], np.array(figures["traversal_targets"]),
                             figures["alignment"])
    joined = profile.assemble(settings, images, 10, profile.Measured.joined(parts), drawn)
    assert joined[0] == figures
    pd.testing.assert_frame_equal(joined[2], table, check_exact=True)
    model_file = BUNDLED / "pgd-linf" / "model.keras"
    folder = profile.folder_for(tmp_path, model_file, settings)
    assert profile.load(folder) is None
    profile.save(folder, figures, pictures, table)
    loaded = profile.load(folder)
    assert loaded.figures == figures and np.array_equal(loaded.pictures["activations"], pictures["activations"])
    np.testing.assert_allclose(loaded.ara["attack_rmse"], table["attack_rmse"], rtol=1e-6)
    assert profile.folder_for(tmp_path, model_file, dataclasses.replace(settings, count=31)) != folder
    assert profile.folder_for(tmp_path, BUNDLED / "standard" / "model.keras", settings) != folder
    with pytest.raises(ValueError, match="unknown profile settings"):
        profile.ProfileSettings.from_dict({"count": 10, "colour": "red"})


def test_attack_graphs_see_no_training_mode(robust):
    """The ascent runs the model with training=False: a Dropout layer stays off, so steps are repeatable."""
    inputs = keras.Input((28, 28, 1))
    noisy = keras.Model(inputs, robust(keras.layers.Dropout(0.5)(inputs)))
    settings = gradient_ascent.Ascent(steps=5, step_size=0.01)
    first = gradient_ascent.maximal_activations(noisy, [1], settings).images
    second = gradient_ascent.maximal_activations(noisy, [1], settings).images
    np.testing.assert_array_equal(first, second)
