"""Compiled graphs cached per model: a model's loops are traced once and reused by every later call."""

from __future__ import annotations

import weakref
from typing import Callable, Hashable

import keras
import tensorflow as tf

_GRAPHS: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


def compiled(model: keras.Model, key: Hashable, function: Callable, signature: list[tf.TensorSpec]):
    """`tf.function(function)` with `signature`, made once per model and key (dropped with the model)."""
    per_model = _GRAPHS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = tf.function(function, input_signature=signature)
    return per_model[key]


def forward(model: keras.Model):
    """The model's compiled inference-mode forward pass on float32 image batches (one per model)."""
    return compiled(model, "forward", lambda batch: model(batch, training=False),
                    [tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)])
