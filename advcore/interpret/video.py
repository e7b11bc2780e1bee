"""Labelled frames of a traversal, as GIF or MP4 (imageio; MP4 through the ffmpeg of `imageio-ffmpeg`)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from advcore.interpret.gradient_ascent import Ascension
from advcore.storage import images

CAPTION_HEIGHT = 48  # a multiple of 16, like the enlarged frames, so MP4 needs no resizing
FONT_SIZE = 12
VIDEO_SECONDS, FASTEST_FPS, SLOWEST_FPS = 8.0, 30.0, 4.0  # a traversal plays in about 8 s, however many steps


def caption(image: np.ndarray, lines: list[str], scale: int = 8) -> np.ndarray:
    """The image enlarged `scale` times (RGB) under a black strip with `lines` of white text (on top: a
    player's controls cover the bottom of a video)."""
    pixels = images.to_uint8(images.enlarge(image, scale))
    picture = Image.fromarray(pixels).convert("RGB")
    canvas = Image.new("RGB", (picture.width, picture.height + CAPTION_HEIGHT))
    canvas.paste(picture, (0, CAPTION_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(FONT_SIZE)
    for row, line in enumerate(lines[:3]):
        draw.text((4, 2 + row * (FONT_SIZE + 3)), line, fill="white", font=font)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def paced(frames: list[np.ndarray], seconds: float = VIDEO_SECONDS) -> tuple[list[np.ndarray], float]:
    """The frames and frame rate that play them in about `seconds`: up to 30 frames a second, and every
    k-th frame (the last one kept) when even that would take longer."""
    stride = max(1, math.ceil(len(frames) / (seconds * FASTEST_FPS)))
    kept = frames[::stride] if (len(frames) - 1) % stride == 0 else [*frames[::stride], frames[-1]]
    return kept, min(FASTEST_FPS, max(SLOWEST_FPS, len(kept) / seconds))


def traversal_frames(ascension: Ascension, class_names, sample: int = 0, scale: int = 8) -> list[np.ndarray]:
    """One captioned frame per recorded step: step, the original and target logits, L2 distance."""
    frames, logits = ascension.frames[:, sample], ascension.logits[:, sample]
    original = int(np.argmax(logits[0]))
    target = int(ascension.targets[sample])
    start = frames[0]
    out = []
    for step, frame, scores in zip(ascension.steps, frames, logits):
        distance = float(np.sqrt(np.sum(np.square(frame - start))))
        now = class_names[int(np.argmax(scores))]
        out.append(caption(frame, [f"step {step}/{ascension.steps[-1]}  L2 {distance:.2f}  says {now}",
                                   f"{class_names[original]} {scores[original]:.1f}",
                                   f"-> {class_names[target]} {scores[target]:.1f}"], scale))
    return out


def encode_mp4(frames: list[np.ndarray], fps: float = 10.0) -> bytes:
    """H.264 MP4 (yuv420p, plays in browsers) of float [0, 1] frames whose sides are multiples of 16."""
    pixels = np.stack([images.to_uint8(frame) for frame in frames])
    if pixels.ndim == 3:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    with tempfile.TemporaryDirectory() as scratch:  # ffmpeg's MP4 muxer needs a seekable file
        path = Path(scratch) / "video.mp4"
        iio.imwrite(path, pixels, fps=fps, codec="libx264", macro_block_size=16)
        return path.read_bytes()
