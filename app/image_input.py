"""The Playground's input: an uploaded image, a sample, or a test image, and its preprocessing."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import re

import numpy as np
import streamlit as st

from advcore.storage import data, images, preprocess
from app import model_widgets, registry, state
from app.registry import ModelEntry
from app.text import counted

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "samples"
IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp"]
SOURCES = ("Upload an image", "Sample gallery", "Test set")
_FIT_HELP = {"pad": "keep the whole image, fill the sides with its border colour",
             "crop": "cut the centre to the model's aspect ratio", "stretch": "squash to the model's size"}


@dataclasses.dataclass(frozen=True)
class InputImage:
    name: str
    pixels: np.ndarray  # float32 HWC in [0, 1], as read
    label: int | None  # the true class when known (test images)
    index: int  # test-set index (the attack's random start depends on it), else 0
    from_test_set: bool

    @functools.cached_property
    def digest(self) -> str:  # several widget keys use it; a large upload is hashed once
        return hashlib.sha1(self.pixels.tobytes()).hexdigest()[:12]


KEPT_IMAGE = re.compile(r"[0-9a-f]{16}--[A-Za-z0-9._-]{1,80}")  # how a kept upload is named (and nothing else)


def kept_images_dir() -> Path:
    return registry.uploads_dir() / "images"


def _keep(content: bytes, name: str) -> str:
    """Keeps an accepted upload (a reload then finds it through ?upload=...); returns its kept name."""
    kept = f"{hashlib.sha256(content).hexdigest()[:16]}--{re.sub(r'[^A-Za-z0-9._-]', '_', name)[-80:]}"
    kept_images_dir().mkdir(parents=True, exist_ok=True)
    (kept_images_dir() / kept).write_bytes(content)
    return kept


def _kept() -> tuple[bytes, str] | None:
    """The upload the URL names, if it is a kept one: its bytes and original name."""
    kept = st.query_params.get("upload", "")
    path = kept_images_dir() / kept
    if not KEPT_IMAGE.fullmatch(kept) or not path.is_file():
        return None
    return path.read_bytes(), kept.split("--", 1)[1]


def _uploaded() -> InputImage | None:
    uploaded = st.file_uploader("Image (PNG, JPEG, GIF, BMP, TIFF, WebP)", type=IMAGE_TYPES, key="image_upload",
                                max_upload_size=images.MAX_UPLOAD_BYTES // 2**20)
    if uploaded is not None:
        content, name = uploaded.getvalue(), uploaded.name
    elif (kept := _kept()) is not None:
        content, name = kept
        st.caption(f"{name}, uploaded earlier (upload another image to replace it)")
    else:
        return None
    try:
        pixels = images.decode_upload(content, name)
    except images.ImageError as error:
        st.error(f"Cannot use this image: {error}")
        return None
    if uploaded is not None:
        st.query_params["upload"] = _keep(content, name)
    return InputImage(name, pixels, None, 0, False)


def _sample() -> InputImage | None:
    paths = sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix.lstrip(".") in IMAGE_TYPES)
    state.from_url("sample", "sample", [p.name for p in paths])
    name = st.selectbox("Sample", [p.name for p in paths], key="sample", on_change=state.to_url,
                        args=("sample", "sample"))
    pixels = images.read_image(SAMPLES_DIR / name)
    return InputImage(name, pixels, None, 0, False)


def _test_image(entry: ModelEntry) -> InputImage | None:
    dataset = entry.card.get("dataset")
    if not data.available(dataset):
        st.info("This model's dataset is not known, so there is no test set to pick from: upload an image.")
        return None
    try:
        split = model_widgets.test_split(dataset, tuple(entry.card["input_shape"]))
    except data.DatasetError as error:
        st.error(f"The {dataset} test set is not available here: {error}")
        return None
    left, right = st.columns(2)
    names = entry.class_names
    state.from_url("test_class", "class", ["any class"] + names)
    wanted = left.selectbox("Class", ["any class"] + names, key="test_class", on_change=state.to_url,
                            args=("test_class", "class"))
    indices = np.arange(len(split)) if wanted == "any class" else np.flatnonzero(split.y == names.index(wanted))
    state.from_url("test_nth", "nth", range(len(indices)))
    nth = right.number_input(f"Image (0..{len(indices) - 1})", 0, len(indices) - 1, key="test_nth",
                             on_change=state.to_url, args=("test_nth", "nth"))
    index = int(indices[nth])
    return InputImage(f"{dataset} test image {index}", split.x[index], int(split.y[index]), index, True)


def choose_image(entry: ModelEntry) -> InputImage | None:
    state.from_url("image_source", "source", SOURCES)
    source = st.radio("Image source", SOURCES, horizontal=True, key="image_source", on_change=state.to_url,
                      args=("image_source", "source"))
    if source == SOURCES[0]:
        return _uploaded()
    if source == SOURCES[1]:
        return _sample()
    return _test_image(entry)


def preprocessing(image: InputImage, entry: ModelEntry) -> preprocess.Preprocessing:
    """The preprocessing controls; defaults fit the image (inversion for dark-on-light photos)."""
    shape = tuple(entry.card["input_shape"])
    if image.from_test_set:
        return preprocess.Preprocessing()
    dark_background = entry.card.get("dataset") in ("fashion_mnist", "mnist")
    suggest_invert = dark_background and preprocess.looks_inverted(image.pixels)
    left, middle, right = st.columns([3, 2, 2])
    fit = left.radio("Fit to the model's aspect ratio", preprocess.FITS, horizontal=True, key="fit",
                     help="; ".join(f"{k}: {v}" for k, v in _FIT_HELP.items()))
    invert = middle.checkbox("Invert", value=suggest_invert, key=f"invert-{image.digest}",
                             help="the model was trained on light objects on black; a photo on white paper "
                                  "needs inverting" if dark_background else "1 - x")
    contrast = right.checkbox("Auto-contrast", value=suggest_invert, key=f"contrast-{image.digest}",
                              help="stretch the 1st..99th percentile of the values to [0, 1]")
    height, width, channels = image.pixels.shape
    st.caption(f"Read as {width} x {height} px, {counted(channels, 'channel')}; "
               f"the model takes {shape[1]} x {shape[0]} px, {counted(shape[2], 'channel')}"
               + (" · invert suggested: the background is light" if suggest_invert else ""))
    return preprocess.Preprocessing(fit=fit, invert=invert, autocontrast=contrast)
