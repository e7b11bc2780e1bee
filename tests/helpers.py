"""Small helpers shared by tests: free ports for servers, polling, image files good and bad."""

import io
import json
import os
import signal
import socket
import time

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
