"""Memory and time of the upload checks on hostile files, as the server meets them.

    python benchmarks/hostile_uploads.py

For each hostile image and model file, a fresh Python process imports what the server imports, warms
up on a good file of the kind (its peak RSS is then "idle"), and takes the file through the page's
path: an image is decoded and fitted to a 28 x 28 x 1 input with "pad"; a model goes through
`app.registry.save_upload` (archive checks, then the sandboxed load in a child process, then the load
here). Reported: the peak resident memory of the server process above idle while checking it (target
< 300 MB for any single file), the seconds until the message, and the message.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 300

PROBE = r"""
import json, os, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
kind, good, hostile, name = sys.argv[2:6]
os.environ["ADVLAB_UPLOADS_DIR"] = tempfile.mkdtemp()
if kind == "image":
    from advcore.storage import images, preprocess
    check, refusal = (lambda content, name: str(preprocess.prepare(images.decode_upload(content, name),
                                                                   (28, 28, 1)).shape)), images.ImageError
else:
    from app import registry
    check, refusal = (lambda content, name: str(registry.save_upload(content, name).card["input_shape"])), \
        registry.RegistryError

import threading

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

peak, checking = [0.0], [True]

def sample():  # the import's own high-water mark would hide growth below it: sample the current RSS
    while checking[0]:
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.002)

check(open(good, "rb").read(), "warm-up" + os.path.splitext(good)[1])
idle = rss_mb()
sampler = threading.Thread(target=sample)
sampler.start()
start = time.perf_counter()
try:
    message = "accepted: " + check(open(hostile, "rb").read(), name)
except refusal as error:
    message = str(error)
seconds = time.perf_counter() - start
checking[0] = False
sampler.join()
print(json.dumps({"growth_mb": max(peak[0], rss_mb()) - idle, "seconds": seconds, "message": message}))
"""


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png16(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB PNG of `pixels` (uint16, HxWx3), written by hand: Pillow cannot write one."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    height, width, _ = pixels.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def hostile_images() -> dict[str, bytes]:
    """The files of issues 20 and 29 and their kin: thin strips, bombs, a large photo, garbage, odd depths."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8).repeat(11, axis=0).repeat(11, axis=1)
    return {
        "strip 100000 x 10 (1 KB)": _png(Image.new("1", (100000, 10))),
        "banner 20000 x 800": _png(Image.new("L", (20000, 800))),
        "bomb 20000 x 20000": _png(Image.new("1", (20000, 20000))),
        "4000 x 4000 RGBA, opaque": _png(Image.new("RGBA", (4000, 4000), (10, 20, 30, 255))),
        "photo 4400 x 3300 RGB": _png(Image.fromarray(blocks)),
        "truncated PNG": _png(Image.fromarray(blocks[:1000, :1000]))[:1000],
        "not an image": b"GIF89a" + bytes(200),
        "1-bit PNG 4000 x 4000": _png(Image.new("1", (4000, 4000), 1)),
        "16-bit RGB PNG 3000 x 3000": _png16(np.broadcast_to(np.arange(3000, dtype=np.uint16)[:, None, None] * 21,
                                                             (3000, 3000, 3))),
        "an icon named .png": _encoded(Image.new("RGB", (64, 64)), "ICO"),
    }


def _measure(kind: str, good: Path, files: dict[str, bytes], workdir: Path) -> float:
    worst = 0.0
    for name, content in files.items():
        path = workdir / "upload"
        path.write_bytes(content)
        upload_name = name if kind == "image" else "upload.keras"
        result = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), kind, str(good), str(path), upload_name],
                                capture_output=True, text=True, check=True,
                                env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"})
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        worst = max(worst, figures["growth_mb"])
        print(f"{kind:<6} {name:<28} {len(content):>11,} {figures['growth_mb']:>10.1f} {figures['seconds']:>8.2f}  "
              f"{figures['message'][:100]}")
    return worst


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from hostile_models import HOSTILE_MODELS, real_model

    workdir = ROOT / "benchmarks" / ".hostile"
    workdir.mkdir(exist_ok=True)
    good_image, good_model = workdir / "good.png", workdir / "good.keras"
    good_image.write_bytes(_png(Image.new("RGB", (300, 200), (200, 180, 160))))
    good_model.write_bytes(real_model())
    print(f"{'kind':<6} {'file':<28} {'bytes':>11} {'growth MB':>10} {'seconds':>8}  message")
    worst = max(_measure("image", good_image, hostile_images(), workdir),
                _measure("model", good_model, {name: make() for name, (make, _) in HOSTILE_MODELS.items()}, workdir))
    print(f"largest growth of the server process above idle: {worst:.1f} MB (target < {TARGET_MB} MB): "
          + ("met" if worst < TARGET_MB else "NOT met"))


if __name__ == "__main__":
    main()
