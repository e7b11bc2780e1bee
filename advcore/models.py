"""Classifier builders (all output logits) and safe `.keras` model files.

Attacks need logits: a softmax output saturates and hides the gradient. Models whose last step is a
softmax are unwrapped to their logits; those AdvLab cannot unwrap are refused with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf
import numpy as np

from advcore import backbones
from advcore.architectures import (ACTIVATIONS, ARCHITECTURES, BACKBONES, DENSENET_DEPTH, DENSENET_GROWTH,
                                   densenet_depth_problem)
from advcore.storage import files, model_files
from advcore.storage.model_files import ModelError


def small_cnn(input_shape=(28, 28, 1), num_classes=10, width=1) -> keras.Model:
    """Two strided 4x4 convs and a 100-unit layer: the fast-adversarial-training MNIST net."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16 * width, 4, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(32 * width, 4, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(100 * width, activation="relu")(x)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=f"small_cnn_w{width}")


def madry_cnn(input_shape=(28, 28, 1), num_classes=10, width=1) -> keras.Model:
    """conv5x5x32-pool-conv5x5x64-pool-fc1024: the MNIST challenge architecture."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(32 * width, 5, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(64 * width, 5, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(1024 * width, activation="relu")(x)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=f"madry_cnn_w{width}")


def _preact_block(x, filters: int, stride: int):
    """BN-ReLU-conv3x3 twice; the shortcut taps the pre-activation when the shape changes."""
    pre = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False)(pre)
    else:
        shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(pre)
    y = keras.layers.ReLU()(keras.layers.BatchNormalization()(y))
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    return keras.layers.Add()([shortcut, y])


def preact_resnet(input_shape=(32, 32, 3), num_classes=10, depth=20, width=1) -> keras.Model:
    """Pre-activation ResNet for small images: 3 stages of (depth-2)/6 blocks, 16/32/64 channels."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, ...), got {depth}")
    blocks = (depth - 2) // 6
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16 * width, 3, padding="same", use_bias=False)(inputs)
    for stage, filters in enumerate((16 * width, 32 * width, 64 * width)):
        for block in range(blocks):
            x = _preact_block(x, filters, stride=2 if stage > 0 and block == 0 else 1)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=f"preact_resnet{depth}")


@keras.saving.register_keras_serializable(package="advcore")
class HalfHuberReLU(keras.layers.Layer):
    """0 below 0, x^2 on [0, 0.5], x - 0.25 above (seed 004): ReLU's shape with a continuous
    derivative (0 -> 2x -> 1), so input gradients (and the Lipschitz penalty) do not jump at 0."""

    def call(self, x):
        return keras.ops.where(x < 0.5, keras.ops.square(keras.ops.relu(x)), x - 0.25)


def _activation(kind: str):
    return HalfHuberReLU() if kind == "half_huber" else keras.layers.ReLU()


def _woods_block(x, filters: int, stride: int, activation: str):
    """BN-act-conv3x3, BN-act-conv3x3 (zero-initialised, so each block starts as the identity);
    a 3x3 conv shortcut from the pre-activation where the shape changes."""
    pre = _activation(activation)(keras.layers.BatchNormalization()(x))
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(pre)
    else:
        shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(pre)
    y = _activation(activation)(keras.layers.BatchNormalization()(y))
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="zeros")(y)
    return keras.layers.Add()([shortcut, y])


def woods_resnet(input_shape=(32, 32, 3), num_classes=10, depth=44, width=1, activation="relu") -> keras.Model:
    """The pre-activation ResNet of seed 004 (Woods et al.): 3 stages of (depth-2)/6 blocks with
    16/32/64 channels, 3x3-conv shortcuts, zero-initialised last conv per branch, a 1x1-conv head
    averaged over the image; `activation` relu or half_huber."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, ...), got {depth}")
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16 * width, 3, padding="same", use_bias=False)(inputs)
    for stage, filters in enumerate((16 * width, 32 * width, 64 * width)):
        for block in range((depth - 2) // 6):
            x = _woods_block(x, filters, 2 if stage > 0 and block == 0 else 1, activation)
    x = _activation(activation)(keras.layers.BatchNormalization()(x))
    x = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="head")(x)
    logits = keras.layers.GlobalAveragePooling2D(dtype="float32", name="logits")(x)
    suffix = "_hh" if activation == "half_huber" else ""
    return keras.Model(inputs, logits, name=f"woods_resnet{depth}{suffix}")


def _bn_relu_conv(x, filters: int, kernel: int):
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    return keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False)(x)


def densenet_bc(input_shape=(32, 32, 3), num_classes=10, depth=DENSENET_DEPTH, growth=DENSENET_GROWTH,
                compression=0.5) -> keras.Model:
    """DenseNet-BC (Huang et al.), seed 001's CIFAR classifier: 3 dense blocks of (depth-4)/6
    bottleneck layers (BN-ReLU-conv1x1 to 4k, BN-ReLU-conv3x3 to k, concatenated), transitions that
    halve the channels and the resolution, global average pooling, a dense head."""
    if problem := densenet_depth_problem(depth):
        raise ValueError(problem)
    if growth < 1:
        raise ValueError(f"DenseNet growth rate must be >= 1, got {growth}")
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(2 * growth, 3, padding="same", use_bias=False)(inputs)
    for block in range(3):
        for _ in range((depth - 4) // 6):
            y = _bn_relu_conv(_bn_relu_conv(x, 4 * growth, 1), growth, 3)
            x = keras.layers.Concatenate()([x, y])
        if block < 2:
            x = keras.layers.AveragePooling2D(2)(_bn_relu_conv(x, int(x.shape[-1] * compression), 1))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=f"densenet_bc{depth}_k{growth}")


def build(architecture: str, input_shape, num_classes: int, width: int = 1, activation: str = "relu",
          depth: int | None = None, growth: int | None = None, pretrained: bool = False) -> keras.Model:
    """A fresh classifier; `depth` and `growth` are densenet_bc's (None: its defaults); `pretrained` takes a
    backbone's ImageNet weights."""
    if architecture in BACKBONES:
        return backbones.backbone_classifier(architecture, input_shape, num_classes,
                                             "imagenet" if pretrained else None)
    if pretrained:
        raise ValueError(f"pretrained weights exist for the backbones ({', '.join(BACKBONES)}), not {architecture}")
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}: choose one of {', '.join(ACTIVATIONS)}")
    if activation != "relu" and architecture != "woods_resnet44":
        raise ValueError(f"the {activation} activation is built into woods_resnet44 only, not {architecture}")
    builders = {
        "small_cnn": lambda: small_cnn(input_shape, num_classes, width),
        "madry_cnn": lambda: madry_cnn(input_shape, num_classes, width),
        "preact_resnet20": lambda: preact_resnet(input_shape, num_classes, 20, width),
        "preact_resnet44": lambda: preact_resnet(input_shape, num_classes, 44, width),
        "woods_resnet44": lambda: woods_resnet(input_shape, num_classes, 44, width, activation),
        "densenet_bc": lambda: densenet_bc(input_shape, num_classes, depth or DENSENET_DEPTH,
                                           growth or DENSENET_GROWTH),
    }
    if architecture not in builders:
        raise ValueError(f"unknown architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
    return builders[architecture]()


def save(model: keras.Model, path: str | os.PathLike) -> Path:
    """Saves atomically: a reader never sees a half-written `.keras` file."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: model files must end in .keras")
    with files.atomic_path(path) as tmp:
        model.save(tmp)
    return path


def load(path: str | os.PathLike, *, logits: bool = True, max_parameters: int | None = None) -> keras.Model:
    """Loads a `.keras` file with safe_mode (no code in the file runs), as a logits model, after the
    archive's checks (`storage.model_files`) and within the parameter cap."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    if path.suffix != ".keras":
        raise ModelError(f"{path}: AdvLab reads Keras 3 `.keras` files only (got {path.suffix or 'no suffix'})")
    limit = max_parameters or model_files.max_parameters()
    model_files.check_archive(path, limit)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except (MemoryError, tf.errors.ResourceExhaustedError):
        raise ModelError(f"{path}: loading it runs out of memory (far too many parameters?)") from None
    except Exception as error:  # Keras raises ValueError, TypeError, h5py errors, ...
        text = str(error)
        raise ModelError(f"{path}: cannot load the model: {type(error).__name__}: "
                         f"{text.splitlines()[0] if text else 'unreadable'}") from error
    problem = unusable(model)
    if model.count_params() > limit:
        problem = f"{model.count_params():,} parameters, over the cap of {limit:,} (${model_files.PARAMETERS_ENV})"
    if problem or (problem := non_finite_weights(model)):
        raise ModelError(f"{path}: {problem}")
    return as_logits(model) if logits else model


class ModelCache:
    """The last few models used (`load`), each loaded again when its file changes: a long-lived
    process (the evaluation worker, a Ray task's) keeps them instead of reading them per job."""

    SIZE = 4

    def __init__(self):
        self.cache: dict[str, tuple[float, keras.Model]] = {}

    def __call__(self, path: str) -> keras.Model:
        modified = Path(path).stat().st_mtime
        if self.cache.get(path, (None,))[0] != modified:
            self.cache[path] = (modified, load(path))
            while len(self.cache) > self.SIZE:
                self.cache.pop(next(iter(self.cache)))
        return self.cache[path][1]


def non_finite_weights(model: keras.Model) -> str | None:
    """Which weight holds NaN or infinite values, if one does: such a model answers NaN to everything."""
    for weight in model.weights:
        values = np.asarray(weight.numpy())
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            return (f"its weight {weight.path} holds NaN or infinite values "
                    f"({int((~np.isfinite(values)).sum()):,} of {values.size:,}): it cannot classify anything")
    return None


def output_activation(model: keras.Model) -> str | None:
    """The non-linear activation the model's last layer applies to its output (softmax, sigmoid, ...), or
    None for linear outputs: logits, which attacks need."""
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return "softmax"
    name = getattr(getattr(last, "activation", None), "__name__", "linear")
    return None if name == "linear" else name


def output_warning(model: keras.Model, stripped: bool = True) -> str | None:
    """What a user must know about a model whose output is not plain logits, or None."""
    activation = output_activation(model)
    if activation == "softmax":
        return ("its output passes through a softmax: AdvLab attacks the logits before it (the softmax stripped)"
                if stripped else "its output passes through a softmax, kept: attacks see probabilities, whose "
                                 "gradients vanish where the model is confident (weaker attacks)")
    if activation:
        return (f"its output passes through {activation}, so it is not logits: attacks may find vanishing "
                "gradients (rebuild it with a linear last layer for honest robustness numbers)")
    return None


def unusable(model: keras.Model) -> str | None:
    """Why AdvLab cannot feed the model images or read one logit per class, if it cannot."""
    if len(model.inputs) != 1:
        return f"it has {len(model.inputs)} inputs; a classifier takes one image batch"
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or any(size is None for size in shape) or shape[-1] not in (1, 3):
        return (f"it takes inputs of shape {shape}; AdvLab feeds images of a fixed (height, width, "
                "channels) with 1 (grayscale) or 3 (RGB) channels")
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        shapes = ", ".join(str(tuple(output.shape)) for output in model.outputs)
        return (f"it outputs {shapes}; a classifier outputs one vector of class logits per image, of shape "
                "(batch, classes)")
    classes = model.outputs[0].shape[-1]
    if classes is None or classes < 2:
        return "it does not output one logit per class (a single output of 2 or more values)"
    return None


def _is_softmax(activation) -> bool:
    return getattr(activation, "__name__", "") == "softmax"


def as_logits(model: keras.Model) -> keras.Model:
    """The model itself if it outputs logits, else the same weights up to the pre-softmax values."""
    if len(model.outputs) != 1:
        raise ModelError(f"model {model.name!r} has {len(model.outputs)} outputs; a classifier has one")
    last = model.layers[-1]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    if isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation) and _is_softmax(last.activation)):
        return keras.Model(inputs, last.input, name=f"{model.name}_logits")
    if _is_softmax(getattr(last, "activation", None)):
        config = last.get_config() | {"activation": "linear", "name": f"{last.name}_logits"}
        unwrapped = last.__class__.from_config(config)
        outputs = unwrapped(last.input)
        unwrapped.set_weights(last.get_weights())
        return keras.Model(inputs, outputs, name=f"{model.name}_logits")
    if outputs_probabilities(model):
        raise ModelError(
            f"model {model.name!r} outputs probabilities from a layer AdvLab cannot unwrap; "
            "attacks need logits: rebuild it so the last layer is linear (apply softmax for display only)")
    return model


def outputs_probabilities(model: keras.Model, probes: int = 8, seed: int = 0) -> bool:
    """Whether outputs on random inputs look like a probability simplex (non-negative, sum 1)."""
    shape = (probes,) + tuple(model.inputs[0].shape[1:])
    sample = np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)
    out = np.asarray(model(sample, training=False), dtype=np.float64)
    return bool(out.min() >= 0 and np.allclose(out.sum(axis=-1), 1, atol=1e-4))


def input_size(model: keras.Model) -> tuple[int, int] | None:
    """(height, width) of the model's input, the size a folder's images are read at; None if not fixed."""
    height, width = model.inputs[0].shape[1:3]
    return None if height is None or width is None else (int(height), int(width))


def check_compatible(model: keras.Model, input_shape, num_classes: int) -> None:
    """Raises a clear error when a model cannot classify a dataset's images."""
    model_shape = tuple(model.inputs[0].shape[1:])
    if any(m is not None and m != d for m, d in zip(model_shape, input_shape)) or len(model_shape) != 3:
        raise ModelError(f"model {model.name!r} takes inputs of shape {model_shape}, "
                         f"the data has shape {tuple(input_shape)}")
    outputs = model.outputs[0].shape[-1]
    if outputs != num_classes:
        raise ModelError(f"model {model.name!r} has {outputs} outputs, the data has {num_classes} classes")
