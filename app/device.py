"""The server's devices: its own set-up, and what the machine offers training (found without
TensorFlow)."""

from __future__ import annotations

import functools
import os
import subprocess

from advcore import devices


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


def setup_server() -> str | None:
    """Sets the server process's devices up, once, before a page runs TensorFlow: its own work on the
    GPUs $ADVLAB_SERVER_DEVICE allows, their memory growing as needed (`advcore.devices`). Returns what
    is wrong with the setting (the server then works on the CPU), or None."""
    try:
        devices.configure(devices.server_gpus())
    except devices.DeviceError as error:
        devices.configure(())
        return str(error)
    return None
