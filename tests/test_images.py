"""Decoding user uploads: every kind of bad file gets its own message; good files in every format load."""

import io

import numpy as np
import pytest
from PIL import Image

from advcore import images


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


GRADIENT = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (20, 1))  # 20 x 32
NOISE_PNG = encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP", "GIF"])
def test_lossless_formats_decode_exactly(fmt):
    options = {"lossless": True} if fmt == "WEBP" else {}
    decoded = images.decode_upload(encode(Image.fromarray(GRADIENT), fmt, **options), f"x.{fmt.lower()}")
    assert decoded.dtype == np.float32 and decoded.shape[:2] == (20, 32)
    np.testing.assert_allclose(decoded[..., 0], GRADIENT / 255, atol=1e-6)


def test_jpeg_rgb_decodes_approximately():
    rgb = np.stack([GRADIENT] * 3, axis=-1)
    decoded = images.decode_upload(encode(Image.fromarray(rgb), "JPEG", quality=95), "x.jpg")
    assert decoded.shape == (20, 32, 3) and np.abs(decoded - rgb / 255).max() < 0.05


def test_sixteen_bit_png_is_scaled_to_unit_range():
    deep = (GRADIENT.astype(np.uint16) * 257)
    decoded = images.decode_upload(encode(Image.fromarray(deep), "PNG"), "deep.png")
    np.testing.assert_allclose(decoded[..., 0], GRADIENT / 255, atol=1e-4)


def test_opaque_alpha_is_dropped():
    rgba = np.dstack([np.stack([GRADIENT] * 3, -1), np.full_like(GRADIENT, 255)])
    assert images.decode_upload(encode(Image.fromarray(rgba), "PNG"), "a.png").shape == (20, 32, 3)


@pytest.mark.parametrize("make, message", [
    (lambda: b"", "the file is empty"),
    (lambda: b"this is not an image at all", "not an image file"),
    (lambda: NOISE_PNG[:len(NOISE_PNG) // 2], "truncated or corrupt"),
    (lambda: encode(Image.new("RGB", (8, 8)), "GIF", save_all=True,
                    append_images=[Image.new("RGB", (8, 8), (255, 0, 0))]), "animated image"),
    (lambda: encode(Image.new("CMYK", (8, 8)), "JPEG"), "CMYK"),
    (lambda: encode(Image.fromarray(np.zeros((8, 8, 4), np.uint8)), "PNG"), "transparent pixels"),
    (lambda: encode(Image.new("1", (5000, 5000)), "PNG"), "5000 x 5000 pixels is over the limit"),
    (lambda: encode(Image.new("1", (20000, 20000)), "PNG"), "decompression bomb"),
])
def test_bad_uploads_get_specific_messages(make, message):
    with pytest.raises(images.ImageError, match=message):
        images.decode_upload(make(), "upload.png")


def test_too_many_bytes_is_refused_before_decoding():
    with pytest.raises(images.ImageError, match="over the 1 MB limit"):
        images.decode_upload(b"\x89PNG" + bytes(2 * 2**20), "big.png", max_bytes=2**20)
