"""Photos to model inputs: channels, aspect, size, inversion, contrast."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advcore import models
from advcore.storage import images, preprocess

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def test_grayscale_matches_pillow():
    rgb = RNG.integers(0, 256, (16, 12, 3), dtype=np.uint8)
    ours = preprocess.match_channels(rgb.astype(np.float32) / 255, 1)[..., 0]
    pillow = np.asarray(Image.fromarray(rgb).convert("L"), np.float32) / 255
    assert np.abs(ours - pillow).max() <= 1 / 255 + 1e-6


def test_gray_to_rgb_repeats_and_same_shape_is_untouched():
    gray = RNG.uniform(0, 1, (5, 5, 1)).astype(np.float32)
    assert (preprocess.match_channels(gray, 3) == gray).all()
    np.testing.assert_array_equal(preprocess.prepare(gray, (5, 5, 1)), gray)


@pytest.mark.parametrize("fit", ["pad", "crop", "stretch"])
def test_fit_to_a_square(fit):
    wide = np.full((20, 40, 1), 0.9, np.float32)
    wide[:, 10:30] = 0.2  # a dark object in the middle of a light background
    fitted = preprocess.fit(wide, 28, 28, fit)
    assert fitted.shape == (28, 28, 1)
    if fit == "pad":  # resized to 14 x 28, then padded with the border colour: the object is all there
        assert (fitted[:7] == np.float32(0.9)).all() and (fitted[21:] == np.float32(0.9)).all()
        np.testing.assert_allclose(fitted[7:21], preprocess.resize(wide, 14, 28))
    if fit == "crop":  # the centre square: all object
        np.testing.assert_allclose(fitted, 0.2, atol=1e-6)
    if fit == "stretch":
        np.testing.assert_allclose(fitted, preprocess.resize(wide, 28, 28))


@pytest.mark.parametrize("shape", [(10, 100_000, 1), (100_000, 10, 3)])
def test_a_thin_strip_is_resized_before_it_is_padded(shape):
    """The upload that once asked for a 37 GiB canvas: no array larger than the image or the input."""
    strip = np.zeros(shape, np.float32)
    fitted = preprocess.fit(strip, 28, 28, "pad")
    assert fitted.shape == (28, 28, shape[-1])


def test_resize_averages_when_shrinking():
    checker = (np.indices((56, 56)).sum(axis=0) % 2).astype(np.float32)[..., None]
    small = preprocess.resize(checker, 28, 28)
    assert small.shape == (28, 28, 1) and np.abs(small - 0.5).max() < 0.02


def test_invert_and_autocontrast():
    dim = np.linspace(0.3, 0.6, 100, dtype=np.float32).reshape(10, 10, 1)
    out = preprocess.prepare(dim, (10, 10, 1), preprocess.Preprocessing(invert=True, autocontrast=True))
    assert out.min() == 0 and out.max() == 1 and out[0, 0, 0] == 1  # the darkest pixel becomes the brightest
    flat = np.full((4, 4, 1), 0.5, np.float32)
    np.testing.assert_array_equal(preprocess.autocontrast(flat), flat)


def test_unknown_fit_is_refused():
    with pytest.raises(ValueError, match="unknown fit 'zoom'"):
        preprocess.Preprocessing(fit="zoom")


def test_bundled_standard_model_recognises_the_sample_photos():
    """The samples are test images as photos: inverted and enlarged. The default preprocessing
    (invert, since the background is light) must turn them back into recognisable inputs."""
    model = models.load(ROOT / "assets" / "models" / "standard" / "model.keras")
    expected = {"ankle-boot": 9, "pullover": 2, "trouser": 1, "shirt": 6, "sneaker": 7, "bag": 8}
    correct = 0
    for path in sorted((ROOT / "assets" / "samples").glob("*.*")):
        if path.suffix == ".py":
            continue
        pixels = images.read_image(path)
        assert preprocess.looks_inverted(pixels)
        x = preprocess.prepare(pixels, (28, 28, 1), preprocess.Preprocessing(invert=True, autocontrast=True))
        correct += int(model.predict(x[None], verbose=0).argmax() == expected[path.stem])
    assert correct >= 5


def test_a_change_of_an_image_of_the_model_size_is_carried_back_exactly():
    image = RNG.uniform(0.2, 0.8, (28, 28, 1)).astype(np.float32)
    delta = RNG.uniform(-0.1, 0.1, (28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(preprocess.carried_back(image, delta, (28, 28, 1)), image + delta, atol=1e-6)
    inverted = preprocess.Preprocessing(invert=True)
    back = preprocess.carried_back(image, delta, (28, 28, 1), inverted)
    np.testing.assert_allclose(preprocess.prepare(back, (28, 28, 1), inverted),
                               preprocess.prepare(image, (28, 28, 1), inverted) + delta, atol=1e-6)


@pytest.mark.parametrize("fit", ["pad", "crop", "stretch"])
def test_a_smooth_change_survives_the_way_back_and_forth(fit):
    """A change that varies slowly is what resizing keeps: carried back to a colour photo of another
    size and prepared again, it is the change the model input had."""
    rows, cols = np.mgrid[0:28, 0:28] / 27
    delta = (0.05 * np.sin(3 * rows) * np.cos(2 * cols))[..., None].astype(np.float32)
    photo = np.full((84, 140, 3), 0.5, np.float32)  # flat: its border colour is its colour
    options = preprocess.Preprocessing(fit=fit, autocontrast=False)
    x = preprocess.prepare(photo, (28, 28, 1), options)
    again = preprocess.prepare(preprocess.carried_back(photo, delta, (28, 28, 1), options), (28, 28, 1), options)
    where = preprocess.placement(photo.shape, 28, 28, fit)
    top, left, h, w = where.target
    inside = np.zeros((28, 28, 1), bool)
    inside[top:top + h, left:left + w] = True
    assert np.abs((again - x) - delta)[inside].max() < 0.01  # the change, where the photo lies


def test_nothing_outside_a_crop_changes():
    photo = RNG.uniform(0, 1, (40, 100, 3)).astype(np.float32)
    back = preprocess.carried_back(photo, np.full((28, 28, 1), 0.1, np.float32), (28, 28, 1),
                                   preprocess.Preprocessing(fit="crop"))
    top, left, h, w = preprocess.placement(photo.shape, 28, 28, "crop").source
    outside = np.ones(photo.shape[:2], bool)
    outside[top:top + h, left:left + w] = False
    assert (back[outside] == photo[outside]).all() and not (back[~outside] == photo[~outside]).all()
