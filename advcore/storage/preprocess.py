"""Turning any photo into the exact tensor a classifier takes, one visible step at a time.

A photo of a shirt on a table is not a Fashion-MNIST image: those are small, grayscale, centred and
bright-on-black. `prepare` matches the channels, fits the aspect ratio (pad, crop or stretch) while it
resizes with antialiasing, and can invert and auto-contrast; the Playground shows each choice.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

FITS = ("pad", "crop", "stretch")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as PIL's "L" conversion


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    fit: str = "pad"  # pad: keep it all, fill with the border colour; crop: centre square; stretch
    invert: bool = False  # 1 - x: dark-on-light photos for bright-on-dark datasets
    autocontrast: bool = False  # stretch the 1st..99th percentile to [0, 1]

    def __post_init__(self):
        if self.fit not in FITS:
            raise ValueError(f"unknown fit {self.fit!r}: choose one of {', '.join(FITS)}")


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grayscale by luma, or colour by repeating the gray channel."""
    if image.shape[-1] == channels:
        return image
    if channels == 1:
        return (image @ _LUMA)[..., None].astype(np.float32)
    if channels == 3 and image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    raise ValueError(f"cannot turn an image with {image.shape[-1]} channels into one with {channels}")


def border_colour(image: np.ndarray) -> np.ndarray:
    """The median colour of the outermost pixels: the background of most product and digit photos."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return np.median(border, axis=0).astype(np.float32)


def looks_inverted(image: np.ndarray) -> bool:
    """Whether the background is light: a dark-on-light photo, the opposite of (Fashion-)MNIST."""
    return float(border_colour(image).mean()) > 0.5


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where `fit` puts the image: its region (top, left, height, width) in the image's own pixels, and
    where that region lands in the model's input."""
    source: tuple[int, int, int, int]
    target: tuple[int, int, int, int]


def placement(shape, height: int, width: int, fit: str) -> Placement:
    h, w = shape[:2]
    if fit == "stretch" or h * width == w * height:
        return Placement((0, 0, h, w), (0, 0, height, width))
    if fit == "crop":
        scale = max(height / h, width / w)  # the crop, at the model's scale, covers the input exactly
        crop_h, crop_w = min(h, round(height / scale)), min(w, round(width / scale))
        return Placement(((h - crop_h) // 2, (w - crop_w) // 2, crop_h, crop_w), (0, 0, height, width))
    scale = min(height / h, width / w)
    inner_h, inner_w = max(1, round(h * scale)), max(1, round(w * scale))
    return Placement((0, 0, h, w), ((height - inner_h) // 2, (width - inner_w) // 2, inner_h, inner_w))


def fit(image: np.ndarray, height: int, width: int, fit: str) -> np.ndarray:
    """The image at exactly (height, width): stretched, centre-cropped to the aspect ratio then resized,
    or resized to fit inside then padded with the border colour. It resizes before it pads, so no array
    is ever larger than the image or the model's input, whatever the image's aspect ratio."""
    where = placement(image.shape, height, width, fit)
    (top, left, h, w), (inner_top, inner_left, inner_h, inner_w) = where.source, where.target
    inner = resize(image[top:top + h, left:left + w], inner_h, inner_w)
    if (inner_h, inner_w) == (height, width):
        return inner
    canvas = np.broadcast_to(border_colour(image), (height, width, image.shape[-1])).copy()
    canvas[inner_top:inner_top + inner_h, inner_left:inner_left + inner_w] = inner
    return canvas


def resize(image: np.ndarray, height: int, width: int, clip: bool = True) -> np.ndarray:
    """Antialiased bilinear resize (area-like when shrinking); exact copy when the size matches.
    `clip=False` for signed arrays such as a perturbation."""
    if image.shape[:2] == (height, width):
        return image
    resized = tf.image.resize(image, (height, width), method="bilinear", antialias=True).numpy()
    return (np.clip(resized, 0, 1) if clip else resized).astype(np.float32)


def _contrast(image: np.ndarray) -> tuple[float, float]:
    """(low, span) that `autocontrast` maps to (0, 1): the 1st..99th percentile; (0, 1) for a flat image,
    which has no contrast to stretch."""
    low, high = np.percentile(image, [1, 99])
    return (float(low), float(high - low)) if high - low >= 1e-3 else (0.0, 1.0)


def autocontrast(image: np.ndarray) -> np.ndarray:
    low, span = _contrast(image)
    return np.clip((image - low) / span, 0, 1).astype(np.float32)


def carried_back(image: np.ndarray, delta: np.ndarray, input_shape, options: Preprocessing = Preprocessing()
                 ) -> np.ndarray:
    """`image` at its own size with `delta`, a change of the model input `prepare` made of it, carried
    back through prepare's steps: contrast and inversion undone, resized from the input's region of the
    image to the image's own pixels (nothing outside a crop changes; a pad's border is dropped), and
    shared by the colour channels. Resizing spreads the change, so the model may judge the result
    otherwise: classify `prepare` of it to know."""
    height, width, channels = input_shape
    image = np.asarray(image, np.float32)
    matched = match_channels(image, channels)
    if options.autocontrast:
        fitted = fit(matched, height, width, options.fit)
        delta = delta * _contrast(1.0 - fitted if options.invert else fitted)[1]
    if options.invert:
        delta = -delta
    where = placement(image.shape, height, width, options.fit)
    (top, left, h, w), (inner_top, inner_left, inner_h, inner_w) = where.source, where.target
    region = resize(delta[inner_top:inner_top + inner_h, inner_left:inner_left + inner_w], h, w, clip=False)
    change = np.zeros(image.shape[:2] + (delta.shape[-1],), np.float32)
    change[top:top + h, left:left + w] = region
    if change.shape[-1] != image.shape[-1]:  # a gray change is the same on every channel; a colour one, averaged
        change = np.repeat(change, image.shape[-1], -1) if change.shape[-1] == 1 else change.mean(-1, keepdims=True)
    return np.clip(image + change, 0, 1).astype(np.float32)


def prepare(image: np.ndarray, input_shape, options: Preprocessing = Preprocessing()) -> np.ndarray:
    """A float32 HWC image in [0, 1] of any size as the model's (H, W, C) input."""
    height, width, channels = input_shape
    image = match_channels(np.asarray(image, np.float32), channels)
    image = fit(image, height, width, options.fit)
    if options.invert:
        image = 1.0 - image
    if options.autocontrast:
        image = autocontrast(image)
    return np.ascontiguousarray(image, dtype=np.float32)
