"""Reading and writing single images as float32 HWC arrays in [0, 1] (imageio underneath).

`decode_upload` is the gate for files from users: it reads the header first, so an oversized or
animated file, a decompression bomb, or a format AdvLab does not read, is refused before any pixel is
decoded. The content decides the format, never the file's name: a PNG named .jpg is read as the PNG it
is, an icon named .png is refused as the icon it is. 1-bit images become black and white, 16-bit ones
keep their 16 bits.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

MAX_UPLOAD_BYTES = 10 * 2**20
MAX_PIXELS = 16_000_000  # 4000 x 4000: far above any classifier input, far below a bomb
MAX_ASPECT = 20  # longer side over shorter side: panoramas pass, a 100000 x 10 strip does not
READ_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "BMP": "BMP", "GIF": "GIF", "WEBP": "WebP",
                "TIFF": "TIFF"}  # Pillow's name of a file's format: the name users know
WORKING_SIDE = 512  # a decoded upload is shrunk to this longer side: 3 MB as float RGB, above any input size


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
    """An image file, through the same checks as an upload."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ImageError(f"{path}: cannot be read ({error.strerror})") from None
    return decode_upload(data, str(path))


_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def _has_image_signature(data: bytes) -> bool:
    """Whether the file starts like an image format, so a failure to read it means damage."""
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def decode_upload(data: bytes, name: str = "upload", *, max_bytes: int = MAX_UPLOAD_BYTES,
                  max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A user's image file as float32 HWC in [0, 1], or an ImageError saying what is wrong with it."""
    if not data:
        raise ImageError(f"{name}: the file is empty")
    if len(data) > max_bytes:
        raise ImageError(f"{name}: {len(data) / 2**20:.1f} MB is over the {max_bytes / 2**20:.0f} MB limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                file_format = opened.format
            properties = iio.improps(data, index=..., plugin="pillow")
            mode = iio.immeta(data, index=0, plugin="pillow").get("mode", "")
    except Exception as error:  # imageio raises many types for what it cannot read
        if isinstance(error.__cause__ or error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise ImageError(f"{name}: its header announces far too many pixels (a decompression bomb?)") from None
        if _has_image_signature(data):
            raise ImageError(f"{name}: the file is truncated or corrupt") from None
        raise ImageError(f"{name}: not an image file AdvLab can read (PNG, JPEG, BMP, GIF, WebP or TIFF)") from None
    if file_format not in READ_FORMATS:
        raise ImageError(f"{name}: its content is in the {file_format} format, which AdvLab does not read (PNG, "
                         "JPEG, BMP, GIF, WebP or TIFF; the content decides, not the file's name)")
    frames, height, width = properties.shape[0], properties.shape[1], properties.shape[2]
    if frames > 1:
        raise ImageError(f"{name}: an animated image ({frames} frames); save the frame you want as PNG")
    if height * width > max_pixels:
        raise ImageError(f"{name}: {width} x {height} pixels is over the limit of {max_pixels:,} pixels")
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ImageError(f"{name}: {width} x {height} pixels is too thin (more than {MAX_ASPECT}:1); crop it "
                         "around the object first")
    if mode == "CMYK":
        raise ImageError(f"{name}: a CMYK image (made for print); save it as RGB")
    try:
        pixels = _png16(data) if _png_bit_depth(data) == 16 else np.asarray(iio.imread(data, index=0, plugin="pillow"))
    except Exception:
        raise ImageError(f"{name}: the file is truncated or corrupt") from None
    if pixels.dtype == bool:  # a 1-bit image: black and white
        pixels = pixels.astype(np.uint8) * np.uint8(255)
    return to_float(shrink(pixels, WORKING_SIDE), name)


def _png_bit_depth(data: bytes) -> int | None:
    """A PNG's bits per sample, from its header (IHDR is always the first chunk); None for other files."""
    return data[24] if data.startswith(_SIGNATURES[0]) and data[12:16] == b"IHDR" and len(data) > 24 else None


def _png16(data: bytes) -> np.ndarray:
    """A 16-bit PNG's pixels as uint16 (Pillow reads 16-bit colour at 8 bits, dropping the low byte)."""
    import tensorflow as tf  # deferred: only 16-bit PNGs need it

    return tf.io.decode_png(data, dtype=tf.uint16).numpy()


def shrink(pixels: np.ndarray, longest: int) -> np.ndarray:
    """Integer pixels (HW or HWC) averaged over k x k blocks until the longer side is at most `longest`
    (box filtering: antialiased, and no float copy of the full-size image is ever made)."""
    factor = -(-max(pixels.shape[:2]) // longest)
    if factor <= 1:
        return pixels
    height, width = pixels.shape[0] // factor, pixels.shape[1] // factor
    blocks = pixels[:height * factor, :width * factor].reshape(height, factor, width, factor, *pixels.shape[2:])
    return np.rint(blocks.mean(axis=(1, 3))).astype(pixels.dtype)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] HWC to uint8 HW (grayscale) or HWC (colour), rounded to nearest."""
    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    path = Path(path)
    iio.imwrite(path, to_uint8(image), extension=".png")
    return path


def encode_png(image: np.ndarray) -> bytes:
    """The image as PNG bytes (8 bit: the exact float values go in `.npy`)."""
    return iio.imwrite("<bytes>", to_uint8(image), extension=".png")


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling: every pixel stays visible as a square."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def encode_gif(frames: list[np.ndarray], seconds_per_frame: float = 0.15, hold_last: float = 1.0) -> bytes:
    """An endlessly looping GIF of float [0, 1] frames; the last frame stays up for `hold_last` s."""
    durations = [round(seconds_per_frame * 1000)] * (len(frames) - 1) + [round(hold_last * 1000)]
    pixels = np.stack([to_uint8(frame) for frame in frames])
    return iio.imwrite("<bytes>", pixels, extension=".gif", is_batch=True, duration=durations, loop=0)


def grid(pictures, columns: int | None = None, gap: int = 1) -> np.ndarray:
    """Tiles [N, H, W, C] images into rows of `columns` (default: one row), `gap` grey pixels apart."""
    pictures = np.asarray(pictures, dtype=np.float32)
    count, height, width, channels = pictures.shape
    columns = columns or count
    rows = -(-count // columns)
    out = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, channels), 0.5, np.float32)
    for i, picture in enumerate(pictures):
        top, left = (i // columns) * (height + gap), (i % columns) * (width + gap)
        out[top:top + height, left:left + width] = picture
    return out
