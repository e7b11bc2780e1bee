"""The server's devices: its own set-up, and what the machine offers training (found without
TensorFlow)."""

from __future__ import annotations

import functools
import os
import subprocess

from advcore import devices


def machine_gpus() -> tuple[tuple[int, ...], str | None]:
    """The GPU inventory, and what is wrong with $ADVLAB_GPUS when it cannot be read (then no GPU)."""
    try:
        return devices.inventory(), None
    except devices.DeviceError as error:
        return (), str(error)


def training_device() -> str:
    """What the machine offers training: "GPU: 2 x NVIDIA A100 (0, 1)" or the CPU."""
    gpus, problem = machine_gpus()
    if problem:
        return f"the CPU ({problem})"
    if not gpus:
        return f"CPU ({os.cpu_count()} cores, no GPU found)"
    name = next(iter(_gpu_names()), "GPU")
    return f"GPU: {len(gpus)} x {name} ({', '.join(map(str, gpus))})" if len(gpus) > 1 else f"GPU: {name}"


@functools.cache
def _gpu_names() -> list[str]:
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split(":", 1)[1].split("(")[0].strip() for line in listing.splitlines() if line.startswith("GPU")]


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
