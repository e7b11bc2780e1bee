"""Small helpers shared by tests: free ports for servers, polling, image files good and bad."""

import io
import json
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
from PIL import Image


def free_port() -> int:
    """A localhost TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float = 120, interval: float = 0.1, describe=lambda: ""):
    """Polls until `condition()` is truthy and returns its value; fails with `describe()` on time-out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s {describe()}".rstrip())


def worker_pid(root) -> int:
    """The pid in the runs root's evaluation-worker record."""
    from advcore.evaluation import worker

    return json.loads(worker.worker_file(root).read_text())["pid"]


def kill_worker(root) -> None:
    """Test teardown: ends the runs root's evaluation worker, if one was ever started."""
    try:
        os.kill(worker_pid(root), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def kill_scheduler(root) -> None:
    """Test teardown: ends the runs root's training scheduler, if one runs, so it starts nothing more."""
    from advcore.jobs import scheduler

    try:
        os.kill(int(scheduler.lock_path(root).read_text()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def encode(image, fmt: str, **options) -> bytes:
    """A PIL image as the bytes of a file in `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _noise_png() -> bytes:
    return encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")


# every kind of bad image file a user uploads: (bytes maker, the message it must get)
BAD_IMAGES = {
    "empty": (lambda: b"", "the file is empty"),
    "not an image": (lambda: b"this is not an image at all", "not an image file"),
    "truncated": (lambda: _noise_png()[:len(_noise_png()) // 2], "truncated or corrupt"),
    "animated": (lambda: encode(Image.new("RGB", (8, 8)), "GIF", save_all=True,
                                append_images=[Image.new("RGB", (8, 8), (255, 0, 0))]), "animated image"),
    "cmyk": (lambda: encode(Image.new("CMYK", (8, 8)), "JPEG"), "CMYK"),
    "alpha": (lambda: encode(Image.fromarray(np.zeros((8, 8, 4), np.uint8)), "PNG"), "transparent pixels"),
    "too many pixels": (lambda: encode(Image.new("1", (5000, 5000)), "PNG"), "5000 x 5000 pixels is over the limit"),
    "bomb": (lambda: encode(Image.new("1", (20000, 20000)), "PNG"), "decompression bomb"),
    "thin strip": (lambda: encode(Image.new("1", (100000, 10)), "PNG"), "100000 x 10 pixels is too thin"),
    "wide banner": (lambda: encode(Image.new("L", (20000, 800)), "PNG"), "20000 x 800 pixels is too thin"),
}


# ----------------------------------------------------------------------------- image folders

CLASSES = ("cat", "dog", "eel")
FORMATS = ("png", "jpeg", "bmp", "webp")
DAMAGED = {"cat/broken.jpg": "Invalid JPEG data", "dog/empty.png": "empty",
           "eel/fake.png": "Unknown image file format", "dog/notes.txt": "not an image format"}


def file_bytes(pixels: np.ndarray, fmt: str) -> bytes:
    """Float [0, 1] pixels as the bytes of an image file in `fmt`."""
    return encode(Image.fromarray(np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8).squeeze()), fmt)


def write_mixed_folder(root: Path, per_class: int = 10, seed: int = 0) -> Path:
    """`per_class` readable images per class, 16 to 48 px on a side, RGB and grayscale, in four formats,
    plus the damaged files of DAMAGED."""
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            height, width = rng.integers(16, 49, 2)
            channels = 1 if i % 5 == 4 else 3
            pixels = rng.uniform(0, 1, (height, width, channels))
            fmt = FORMATS[i % len(FORMATS)]
            (root / name / f"{i}.{fmt}").write_bytes(file_bytes(pixels, fmt))
    (root / "cat" / "broken.jpg").write_bytes(file_bytes(rng.uniform(0, 1, (40, 40, 3)), "jpeg")[:300])
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "eel" / "fake.png").write_bytes(b"these are not pixels")
    (root / "dog" / "notes.txt").write_text("a note left in a class folder")
    return root


def shown(markdown: str) -> str:
    """What a reader sees of markdown that escapes its punctuation (app.text.literal): the text itself."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown).replace("\u200b", "")
