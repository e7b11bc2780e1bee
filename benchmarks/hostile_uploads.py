"""Memory and time of the upload checks on hostile files, as the server meets them.

    python benchmarks/hostile_uploads.py

For each hostile image file, a fresh Python process imports what the Playground imports, warms up
on a good photo (its peak RSS is then "idle"), and takes the file through the page's path: decode the
upload, then fit it to a 28 x 28 x 1 model input with "pad". Reported: the peak resident memory
above idle while checking it (target < 300 MB for any single file), the seconds until the message,
and the message. A file that is accepted shows the shape the model gets.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 300

PROBE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from advcore.storage import images, preprocess

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

good = open(sys.argv[2], "rb").read()
preprocess.prepare(images.decode_upload(good, "warm-up.png"), (28, 28, 1))
idle = peak_mb()
content = open(sys.argv[3], "rb").read()
start = time.perf_counter()
try:
    shape = str(preprocess.prepare(images.decode_upload(content, sys.argv[4]), (28, 28, 1)).shape)
    message = f"accepted: model input {shape}"
except images.ImageError as error:
    message = str(error)
seconds = time.perf_counter() - start
print(json.dumps({"growth_mb": peak_mb() - idle, "seconds": seconds, "message": message}))
"""


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def hostile_images() -> dict[str, bytes]:
    """The files of issue 20 and their kin: thin strips, bombs, a large photo, garbage."""
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
    }


def main() -> None:
    workdir = ROOT / "benchmarks" / ".hostile"
    workdir.mkdir(exist_ok=True)
    good = workdir / "good.png"
    good.write_bytes(_png(Image.new("RGB", (300, 200), (200, 180, 160))))
    worst = 0.0
    print(f"{'file':<28} {'bytes':>10} {'growth MB':>10} {'seconds':>8}  message")
    for name, content in hostile_images().items():
        path = workdir / "upload"
        path.write_bytes(content)
        result = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), str(good), str(path), name],
                                capture_output=True, text=True, check=True)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        worst = max(worst, figures["growth_mb"])
        print(f"{name:<28} {len(content):>10,} {figures['growth_mb']:>10.1f} {figures['seconds']:>8.3f}  "
              f"{figures['message'][:90]}")
    print(f"largest growth above idle: {worst:.1f} MB (target < {TARGET_MB} MB): "
          + ("met" if worst < TARGET_MB else "NOT met"))


if __name__ == "__main__":
    main()
