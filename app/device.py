"""Which device training will use, found without importing TensorFlow into the page."""

from __future__ import annotations

import functools
import os
import subprocess


@functools.cache
def training_device() -> str:
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        listing = ""
    gpus = [line.split(":", 1)[1].split("(")[0].strip() for line in listing.splitlines() if line.startswith("GPU")]
    if gpus:
        return f"GPU: {len(gpus)} x {gpus[0]}" if len(gpus) > 1 else f"GPU: {gpus[0]}"
    return f"CPU ({os.cpu_count()} cores, no GPU found)"
