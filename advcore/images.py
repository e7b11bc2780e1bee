"""Reading and writing single images as float32 HWC arrays in [0, 1] (imageio underneath)."""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np


class ImageError(ValueError):
    """An image file AdvLab cannot use, with the reason."""


def to_float(image: np.ndarray, where: str = "image") -> np.ndarray:
    """uint8/uint16 pixels (HW, HWC) to float32 HWC in [0, 1]; opaque alpha is dropped."""
    if image.dtype == np.uint8:
        scaled = image.astype(np.float32) / np.float32(255)
    elif image.dtype == np.uint16:
        scaled = image.astype(np.float32) / np.float32(65535)
    else:
        raise ImageError(f"{where}: pixels of type {image.dtype} are not supported (8 or 16 bit only)")
    if scaled.ndim == 2:
        scaled = scaled[..., np.newaxis]
    if scaled.ndim != 3 or scaled.shape[-1] not in (1, 2, 3, 4):
        raise ImageError(f"{where}: expected a single grayscale or colour image, got shape {image.shape}")
    if scaled.shape[-1] in (2, 4):
        if scaled[..., -1].min() < 1:
            raise ImageError(f"{where}: has transparent pixels; flatten it onto a background first")
        scaled = scaled[..., :-1]
    return np.ascontiguousarray(scaled)


def read_image(path: str | os.PathLike) -> np.ndarray:
    try:
        pixels = iio.imread(path, index=0)
    except Exception as error:  # imageio raises many types for undecodable files
        raise ImageError(f"{path}: not a readable image ({error})") from error
    return to_float(np.asarray(pixels), str(path))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] HWC to uint8 HW (grayscale) or HWC (colour), rounded to nearest."""
    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    path = Path(path)
    iio.imwrite(path, to_uint8(image), extension=".png")
    return path
