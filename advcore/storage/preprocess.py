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


def fit(image: np.ndarray, height: int, width: int, fit: str) -> np.ndarray:
    """The image at exactly (height, width): stretched, centre-cropped to the aspect ratio then resized,
    or resized to fit inside then padded with the border colour. It resizes before it pads, so no array
    is ever larger than the image or the model's input, whatever the image's aspect ratio."""
    h, w = image.shape[:2]
    if fit == "stretch" or h * width == w * height:
        return resize(image, height, width)
    if fit == "crop":
        scale = max(height / h, width / w)  # the crop, at the model's scale, covers the input exactly
        crop_h, crop_w = min(h, round(height / scale)), min(w, round(width / scale))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        return resize(image[top:top + crop_h, left:left + crop_w], height, width)
    scale = min(height / h, width / w)
    inner = resize(image, max(1, round(h * scale)), max(1, round(w * scale)))
    canvas = np.broadcast_to(border_colour(image), (height, width, image.shape[-1])).copy()
    top, left = (height - inner.shape[0]) // 2, (width - inner.shape[1]) // 2
    canvas[top:top + inner.shape[0], left:left + inner.shape[1]] = inner
    return canvas


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bilinear resize (area-like when shrinking); exact copy when the size matches."""
    if image.shape[:2] == (height, width):
        return image
    resized = tf.image.resize(image, (height, width), method="bilinear", antialias=True)
    return np.clip(resized.numpy(), 0, 1).astype(np.float32)


def autocontrast(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [1, 99])
    if high - low < 1e-3:  # a flat image has no contrast to stretch
        return image
    return np.clip((image - low) / (high - low), 0, 1).astype(np.float32)


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
