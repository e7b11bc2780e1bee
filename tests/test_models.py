"""Model builders, safe `.keras` files and the logits unwrapping."""

import keras
import numpy as np
import pytest

from advcore import models


@pytest.mark.parametrize("architecture, shape, classes", [
    ("small_cnn", (28, 28, 1), 10), ("madry_cnn", (28, 28, 1), 10),
    ("preact_resnet20", (32, 32, 3), 100), ("preact_resnet20", (28, 28, 1), 10),
])
def test_builders_output_one_logit_per_class(architecture, shape, classes):
    model = models.build(architecture, shape, classes)
    out = model(np.zeros((2, *shape), np.float32), training=False)
    assert out.shape == (2, classes)
    assert not models.outputs_probabilities(model)


def test_small_cnn_is_the_fast_training_size():
    """Conv 4x4x16 s2, conv 4x4x32 s2, fc 100, fc 10 on 28x28: 166,406 parameters (width 1)."""
    assert models.small_cnn().count_params() == 16 * 17 + 32 * (16 * 16 + 1) + 1568 * 100 + 100 + 1010
    assert models.small_cnn(width=2).count_params() > 2 * models.small_cnn().count_params()


@pytest.mark.parametrize("depth", [20, 44])
def test_preact_resnet_has_depth_weighted_layers_on_the_main_path(depth):
    model = models.preact_resnet(depth=depth)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    main_path = [c for c in convs if c.kernel_size == (3, 3)]
    assert len(main_path) + 1 == depth  # plus the classifier layer


def test_half_huber_relu_value_and_derivative_at_the_joins():
    import tensorflow as tf

    layer = models.HalfHuberReLU()
    x = tf.constant([-1.0, -1e-6, 0.0, 1e-6, 0.25, 0.5 - 1e-6, 0.5, 0.5 + 1e-6, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    slope = tape.gradient(y, x).numpy()
    np.testing.assert_allclose(y.numpy(), [0, 0, 0, 1e-12, 0.0625, (0.5 - 1e-6) ** 2, 0.25, 0.25 + 1e-6, 1.75],
                               atol=1e-7)
    np.testing.assert_allclose(slope, [0, 0, 0, 2e-6, 0.5, 1 - 2e-6, 1, 1, 1], atol=1e-5)  # continuous


def test_woods_resnet44_is_the_seeds_network():
    """Seed 004: 44 weighted layers (stem, 21 blocks x 2 convs, 1x1-conv head), 3x3-conv shortcuts
    where the shape changes, every block's last conv zero-initialised, logits from the head."""
    model = models.build("woods_resnet44", (32, 32, 3), 10, activation="half_huber")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    zeroed = [c for c in convs if not np.any(c.get_weights()[0])]  # each branch's last conv
    shortcuts = [c for c in convs[1:] if _feeds_an_add_directly(model, c) and c not in zeroed]  # not the stem
    assert len(zeroed) == 21 and len(shortcuts) == 2 and len(convs) - len(shortcuts) == 44
    assert all(c.kernel_size == (3, 3) and c.strides == (2, 2) for c in shortcuts)
    assert convs[-1].kernel_size == (1, 1) and convs[-1].filters == 10
    assert any(isinstance(layer, models.HalfHuberReLU) for layer in model.layers)
    out = model(np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32), training=False)
    assert out.shape == (2, 10)


def _feeds_an_add_directly(model, layer) -> bool:
    return any(isinstance(other, keras.layers.Add) and layer.output in other.input for other in model.layers)


def test_a_half_huber_model_file_loads_in_safe_mode(tmp_path):
    model = models.build("woods_resnet44", (32, 32, 3), 10, activation="half_huber")
    loaded = models.load(models.save(model, tmp_path / "hh.keras"))
    x = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-5)


def test_bad_depth_and_architecture_are_refused():
    with pytest.raises(ValueError, match="6n\\+2"):
        models.preact_resnet(depth=21)
    with pytest.raises(ValueError, match="unknown architecture"):
        models.build("vgg", (28, 28, 1), 10)
    with pytest.raises(ValueError, match="half_huber activation is built into woods_resnet44 only"):
        models.build("small_cnn", (28, 28, 1), 10, activation="half_huber")


def test_save_and_load_round_trip(tmp_path):
    model = models.small_cnn()
    path = models.save(model, tmp_path / "sub" / "m.keras")
    loaded = models.load(path)
    x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["m.keras"]  # no temp files left


def _softmax_models():
    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Dense(20, activation="relu")(keras.layers.Flatten()(inputs))
    dense_softmax = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
    layer_softmax = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                      keras.layers.Dense(10), keras.layers.Softmax()])
    activation_softmax = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                           keras.layers.Dense(10), keras.layers.Activation("softmax")])
    return [dense_softmax, layer_softmax, activation_softmax]


@pytest.mark.parametrize("model", _softmax_models(), ids=["dense", "softmax_layer", "activation"])
def test_softmax_models_are_used_through_their_logits(model, tmp_path):
    path = models.save(model, tmp_path / "soft.keras")
    logits_model = models.load(path)
    x = np.random.default_rng(1).uniform(size=(5, 28, 28, 1)).astype(np.float32)
    logits = np.asarray(logits_model(x))
    assert not models.outputs_probabilities(logits_model)
    np.testing.assert_allclose(keras.ops.softmax(logits), model(x), atol=1e-6)


def test_a_model_with_custom_code_is_refused(tmp_path):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda t: t * 2),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(models.ModelError, match="contains Python code \\(a Lambda layer"):
        models.load(path)


@pytest.mark.parametrize("name, content, message", [
    ("missing.keras", None, "no such model file"),
    ("model.h5", b"x", "Keras 3 `.keras` files only"),
    ("garbage.keras", b"not a zip", "not a .keras file \\(a Keras 3 model is a zip archive"),
])
def test_bad_model_files_are_refused(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(models.ModelError, match=message):
        models.load(tmp_path / name)


def test_compatibility_check_names_the_mismatch():
    model = models.small_cnn()
    models.check_compatible(model, (28, 28, 1), 10)
    with pytest.raises(models.ModelError, match=r"inputs of shape \(28, 28, 1\).*\(32, 32, 3\)"):
        models.check_compatible(model, (32, 32, 3), 10)
    with pytest.raises(models.ModelError, match="10 outputs, the data has 100 classes"):
        models.check_compatible(model, (28, 28, 1), 100)
