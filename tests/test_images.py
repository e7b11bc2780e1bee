"""Decoding user uploads: every kind of bad file gets its own message; good files in every format load."""

import io

import imageio.v3 as iio
import numpy as np
import pytest
from helpers import BAD_IMAGES, encode
from PIL import Image

from advcore.storage import images

GRADIENT = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (20, 1))  # 20 x 32


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


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_bad_uploads_get_specific_messages(kind):
    make, message = BAD_IMAGES[kind]
    with pytest.raises(images.ImageError, match=message):
        images.decode_upload(make(), "upload.png")


def test_too_many_bytes_is_refused_before_decoding():
    with pytest.raises(images.ImageError, match="over the 1 MB limit"):
        images.decode_upload(b"\x89PNG" + bytes(2 * 2**20), "big.png", max_bytes=2**20)


def test_png_and_npy_downloads_round_trip():
    image = np.random.default_rng(1).uniform(0, 1, (6, 5, 3)).astype(np.float32)
    png = images.decode_upload(images.encode_png(image), "x.png")
    assert np.abs(png - image).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(np.load(io.BytesIO(images.encode_npy(image))), image)


def test_gif_has_every_frame_and_holds_the_last():
    frames = [np.full((4, 4, 1), i / 4, np.float32) for i in range(5)]
    gif = images.encode_gif(frames, seconds_per_frame=0.1, hold_last=2.0)
    decoded = iio.imread(gif, index=None)
    assert len(decoded) == 5 and [int(f[0, 0].ravel()[0]) for f in decoded] == [0, 64, 128, 191, 255]
    assert [iio.immeta(gif, index=i)["duration"] for i in (0, 4)] == [100, 2000]


def test_enlarge_repeats_pixels():
    image = np.arange(4, dtype=np.float32).reshape(2, 2, 1)
    assert images.enlarge(image, 3)[:, :, 0].tolist() == np.kron(image[..., 0], np.ones((3, 3))).tolist()


def test_a_large_photo_is_decoded_as_a_small_working_copy_with_the_same_content():
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8).repeat(10, axis=0).repeat(10, axis=1)
    photo[:, :2000] //= 4  # a dark left half, to see that the layout survives
    pixels = images.decode_upload(encode(Image.fromarray(photo), "PNG"), "photo.png")
    assert pixels.shape == (375, 500, 3) and pixels.dtype == np.float32  # 8 x 8 blocks: 2.2 MB as float
    assert abs(pixels[:, :250].mean() - photo[:, :2000].mean() / 255) < 2e-3
    assert abs(pixels[:, 250:].mean() - photo[:, 2000:].mean() / 255) < 2e-3


def test_shrink_averages_blocks_exactly():
    pixels = np.arange(16, dtype=np.uint16).reshape(4, 4)
    np.testing.assert_array_equal(images.shrink(pixels, 2), [[2, 4], [10, 12]])  # rint(2.5) = 2, as numpy rounds
    assert images.shrink(pixels, 4) is pixels


def test_a_panorama_within_the_ratio_passes():
    pixels = images.decode_upload(encode(Image.new("RGB", (2000, 100)), "PNG"), "panorama.png")
    assert pixels.shape == (25, 500, 3)


def test_a_one_bit_png_is_black_and_white():
    bits = np.zeros((6, 10), bool)
    bits[:, 5:] = True
    decoded = images.decode_upload(encode(Image.fromarray(bits), "PNG"), "bits.png")
    assert decoded.shape == (6, 10, 1) and set(np.unique(decoded)) == {0.0, 1.0}
    np.testing.assert_array_equal(decoded[..., 0], bits.astype(np.float32))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_sixteen_bit_pngs_keep_all_sixteen_bits(channels):
    """Pillow reads 16-bit colour at 8 bits; the low byte must survive (values 1 apart stay 1 apart)."""
    import tensorflow as tf

    pixels = (np.arange(12 * 9 * channels).reshape(12, 9, channels) * 601 + 3).astype(np.uint16)
    if channels == 4:
        pixels[..., 3] = 65535  # opaque
    decoded = images.decode_upload(tf.io.encode_png(pixels).numpy(), "deep.png")
    expected = pixels[..., :3] if channels == 4 else pixels
    np.testing.assert_allclose(decoded, expected / np.float32(65535), atol=1e-7)


def test_the_content_decides_the_format_not_the_name():
    icon = encode(Image.new("RGB", (16, 16)), "ICO")
    with pytest.raises(images.ImageError, match="icon.png: its content is in the ICO format, which AdvLab does not "
                                                 "read .* the content decides, not the file's name"):
        images.decode_upload(icon, "icon.png")
    png_named_jpg = encode(Image.fromarray(GRADIENT), "PNG")
    np.testing.assert_allclose(images.decode_upload(png_named_jpg, "photo.jpg")[..., 0], GRADIENT / 255, atol=1e-6)
