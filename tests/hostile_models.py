"""Hostile `.keras` files, made from a real small model: the corpus of tests/test_hostile_models.py
and of benchmarks/hostile_uploads.py. Each maker returns the file's bytes."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import keras

DENSE = {"module": "keras.layers", "class_name": "Dense", "registered_name": None}


def real_model(*layers, weights=None) -> bytes:
    """A small Fashion-MNIST-shaped model's file: Flatten and Dense(10), or the `layers` given; `weights`
    maps its weight arrays to others."""
    model = keras.Sequential([keras.Input((28, 28, 1)), *(layers or (keras.layers.Flatten(), keras.layers.Dense(10)))])
    if weights:
        model.set_weights([weights(array) for array in model.get_weights()])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


def _with_members(extra: dict[str, bytes]) -> bytes:
    return _zipped(_members(real_model()) | extra)


def _members(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _with_config(edit) -> bytes:
    members = _members(real_model())
    config = json.loads(members["config.json"])
    members["config.json"] = json.dumps(edit(config)).encode()
    return _zipped(members)


def _dense_units(config: dict, units: int) -> dict:
    layer = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
    layer["config"]["units"] = units
    return config


def _nested(depth: int) -> dict:
    node: dict = {"x": 1}
    for _ in range(depth):
        node = {"class_name": "Dense", "module": "keras.layers", "config": node}
    return node


def _custom(config: dict) -> dict:
    config["config"]["layers"][1] |= {"module": "evil.layers", "class_name": "Backdoor", "registered_name": "Backdoor"}
    return config


# name: (maker, words of the message)
HOSTILE_MODELS = {
    "empty file": (lambda: b"", "the file is empty"),
    "text renamed .keras": (lambda: b"just some text", "not a .keras file"),
    "HDF5 renamed .keras": (lambda: b"\x89HDF\r\n\x1a\n" + bytes(100), "a legacy HDF5 model"),
    "truncated archive": (lambda: real_model()[:len(real_model()) // 2], "the archive is truncated or damaged"),
    "zip without config.json": (lambda: _zipped({"model.weights.h5": b"x"}), "config.json is missing"),
    "zip without weights": (lambda: _zipped({"config.json": b"{}"}), "model.weights.h5 is missing"),
    "config declaring 3.9 GiB": (lambda: _zipped({"config.json": b" " * (4 * 2**20), "model.weights.h5": b""}),
                                 "its config.json declares 4 MB"),
    "weights declaring 300 MB": (lambda: _zipped({"config.json": b"{}", "model.weights.h5": bytes(300 * 2**20)}),
                                 "its weights declare 300 MB, more than 50,000,000 parameters"),
    "config not JSON": (lambda: _zipped({"config.json": b"{not json", "model.weights.h5": b""}),
                        "its config.json is not valid JSON"),
    "config a list": (lambda: _zipped({"config.json": b"[1, 2]", "model.weights.h5": b""}),
                      "does not describe a model"),
    "config nested 300 deep": (lambda: _zipped({"config.json": json.dumps(_nested(300)).encode(), "model.weights.h5": b""}),
                               "nested too deeply"),
    "custom layer class": (lambda: _with_config(_custom), "unknown class `Backdoor` (module evil.layers)"),
    "Lambda layer": (lambda: _with_config(lambda c: c | {"config": c["config"] | {"layers": c["config"]["layers"] + [
        {"module": "keras.layers", "class_name": "Lambda", "config": {"function": "x"}}]}}), "contains Python code"),
    "600,000-unit Dense": (lambda: _with_config(lambda c: _dense_units(c, 600_000)),
                           "loading it runs out of"),
    "3,000,000-unit Dense": (lambda: _with_config(lambda c: _dense_units(c, 3_000_000)),
                             "loading it runs out of"),
    "an image out, not a vector": (lambda: real_model(keras.layers.Conv2D(10, 3, padding="same")),
                                   "it outputs (None, 28, 28, 10); a classifier outputs one vector of class logits"),
    "NaN weights": (lambda: real_model(weights=lambda array: array * float("nan")),
                    "holds NaN or infinite values (7,840 of 7,840)"),
    "an infinite bias": (lambda: real_model(weights=lambda array: array + (float("inf") if array.ndim == 1 else 0)),
                         "holds NaN or infinite values (10 of 10)"),
    "30 members": (lambda: _with_members({f"assets/{i}.txt": b"x" for i in range(27)}),
                   "the archive holds 30 members; a Keras 3 model file holds three (at most 16)"),
    "a member declaring 100 MB": (lambda: _with_members({"assets/zeros.bin": bytes(100 * 2**20)}),
                                  "the archive's other members declare 100 MB"),
    "a member outside the archive": (lambda: _with_members({"../../outside.txt": b"x"}),
                                     "the archive names a member outside itself ('../../outside.txt')"),
}
