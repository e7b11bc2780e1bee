"""Keras applications (ResNet-50, EfficientNet-B0, ConvNeXt-Tiny, MobileNetV2) as classifiers of [0, 1]
pixels, for fine-tuning and adversarial fine-tuning.

Each backbone expects its own input scale (ResNet-50: BGR with the ImageNet mean subtracted, 0-255;
MobileNetV2: [-1, 1]; EfficientNet and ConvNeXt normalise 0-255 inputs themselves). That conversion is
built into the model as a frozen 1x1 convolution (grayscale inputs become three equal channels), so
the model takes [0, 1] pixels like every AdvLab model, attacks' budgets stay in pixel units, and the
saved `.keras` file holds only standard layers (it loads with safe_mode). ImageNet weights come from
the Keras cache (`~/.keras/models`), downloaded there once on a machine with internet.
"""

from __future__ import annotations

import keras
import numpy as np

from advcore.architectures import BACKBONES

MIN_SIDE = 32  # the applications' smallest input
_IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


def _application(name: str):
    """(constructor, input convention) of a backbone."""
    apps = keras.applications
    return {
        "resnet50": (apps.ResNet50, "caffe"),
        "efficientnet_b0": (apps.EfficientNetB0, "0-255"),
        "convnext_tiny": (apps.ConvNeXtTiny, "0-255"),
        "mobilenet_v2": (apps.MobileNetV2, "-1..1"),
    }[name]


def pixel_conversion(convention: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (1, 1, channels, 3), bias (3,)) taking [0, 1] pixels to the backbone's input convention."""
    if convention == "caffe":  # BGR order, 0-255, ImageNet mean subtracted
        mixing, bias = np.eye(3)[::-1] * 255.0, -np.asarray(_IMAGENET_MEAN_BGR)
    elif convention == "-1..1":
        mixing, bias = np.eye(3) * 2.0, -np.ones(3)
    else:
        mixing, bias = np.eye(3) * 255.0, np.zeros(3)
    kernel = mixing.T if channels == 3 else mixing.sum(axis=1, keepdims=True).T  # gray feeds every colour
    return kernel.reshape(1, 1, channels, 3).astype(np.float32), bias.astype(np.float32)


def backbone_classifier(name: str, input_shape, num_classes: int, weights: str | None = None) -> keras.Model:
    """Backbone `name` (global average pooling) and a new linear head giving `num_classes` logits.

    `weights`: None (random) or "imagenet" (from the Keras cache)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}")
    height, width, channels = input_shape
    if min(height, width) < MIN_SIDE or channels not in (1, 3):
        raise ValueError(f"{name} needs colour or grayscale images of at least {MIN_SIDE} x {MIN_SIDE} pixels, "
                         f"the data has {tuple(input_shape)}: read a folder at a larger --image-size")
    construct, convention = _application(name)
    inputs = keras.Input(input_shape, name="pixels")
    convert = keras.layers.Conv2D(3, 1, trainable=False, name="backbone_input_conversion")
    converted = convert(inputs)
    convert.set_weights(list(pixel_conversion(convention, channels)))
    try:
        backbone = construct(include_top=False, weights=weights, input_shape=(height, width, 3), pooling="avg")
    except Exception as error:  # no cached weights offline: say where they are looked for
        if weights is None:
            raise
        raise ValueError(f"{name}: cannot load {weights} weights ({type(error).__name__}: {error}); on a machine "
                         f"with internet, build it once so Keras caches them in ~/.keras/models") from error
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(backbone(converted))
    return keras.Model(inputs, logits, name=name)
