"""Keras-application backbones with their input normalisation built in, tested with weights=None (no
machine here downloads ImageNet weights): the conversion equals each application's own
`preprocess_input`, the models load with safe_mode, and fine-tuning leaves the conversion as it is."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from advcore import backbones, models
from advcore.architectures import BACKBONES
from advcore.training.config import ConfigError, TrainConfig

PREPROCESS = {"resnet50": keras.applications.resnet50.preprocess_input,
              "efficientnet_b0": keras.applications.efficientnet.preprocess_input,
              "convnext_tiny": keras.applications.convnext.preprocess_input,
              "mobilenet_v2": keras.applications.mobilenet_v2.preprocess_input}


@pytest.mark.parametrize("name", BACKBONES)
def test_the_built_in_conversion_is_the_applications_own_preprocessing(name):
    pixels = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    model = models.build(name, (32, 32, 3), 5)
    assert model.output_shape == (None, 5) and model.input_shape == (None, 32, 32, 3)
    conversion = keras.Model(model.inputs, model.get_layer("backbone_input_conversion").output)
    expected = PREPROCESS[name](pixels * 255.0)
    np.testing.assert_allclose(conversion(pixels).numpy(), expected, atol=1e-3)
    gray = pixels[..., :1]
    kernel, bias = backbones.pixel_conversion(backbones._application(name)[1], 1)
    converted = tf.nn.conv2d(gray, kernel, 1, "VALID") + bias
    np.testing.assert_allclose(converted.numpy(), PREPROCESS[name](np.repeat(gray, 3, -1) * 255.0), atol=1e-3)


def test_a_backbone_saves_and_loads_safely_with_its_conversion_frozen(tmp_path):
    model = models.build("mobilenet_v2", (32, 32, 1), 3)  # grayscale data: one channel in
    x = np.random.default_rng(1).uniform(0, 1, (4, 32, 32, 1)).astype(np.float32)
    loaded = models.load(models.save(model, tmp_path / "m.keras"))
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-5)
    trained = {id(weight) for weight in loaded.trainable_weights}
    conversion, head = loaded.get_layer("backbone_input_conversion"), loaded.get_layer("logits")
    assert not {id(weight) for weight in conversion.weights} & trained and {id(head.kernel), id(head.bias)} <= trained
    assert len(trained) > 100  # the backbone's own layers train


def test_inputs_too_small_and_misplaced_options_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="at least 32 x 32"):
        models.build("resnet50", (28, 28, 1), 10)
    with pytest.raises(ValueError, match="pretrained weights exist for the backbones"):
        models.build("small_cnn", (28, 28, 1), 10, pretrained=True)
    with pytest.raises(ConfigError, match="pretrained"):
        TrainConfig.from_dict({"model": {"pretrained": True}})
    with pytest.raises(ConfigError, match="fixed width"):
        TrainConfig.from_dict({"model": {"architecture": "convnext_tiny", "width": 2}})
    assert TrainConfig.from_dict({"model": {"architecture": "resnet50", "pretrained": True}}).model.pretrained
