"""The GPUs of this machine, and how every AdvLab process takes them.

TensorFlow maps nearly all of a GPU's memory in the first process that touches it, and every process
sees every GPU. So each process that imports TensorFlow (the server, a training run, the evaluation
worker, the model check) calls `configure` first: every GPU it sees grows its memory as needed, or is
capped at $ADVLAB_GPU_MEMORY_MB. Which GPUs a child sees is its parent's choice, made through
CUDA_VISIBLE_DEVICES (`child_env`): the scheduler gives each run its own (`advcore.jobs.gpus`).

The inventory comes from `nvidia-smi`, never from TensorFlow in the asking process, so counting GPUs
reserves none; $ADVLAB_GPUS overrides it ("0,1,3", or "none"), which is also how tests fake a box.
"""

from __future__ import annotations

import functools
import os
import subprocess
from typing import Sequence

GPUS_ENV = "ADVLAB_GPUS"
MEMORY_ENV = "ADVLAB_GPU_MEMORY_MB"
SERVER_DEVICE_ENV = "ADVLAB_SERVER_DEVICE"
VISIBLE = "CUDA_VISIBLE_DEVICES"
ORDER = "CUDA_DEVICE_ORDER"  # PCI_BUS_ID: CUDA numbers the GPUs as nvidia-smi does
GROWTH = "TF_FORCE_GPU_ALLOW_GROWTH"
MAX_GPUS = 64


class DeviceError(ValueError):
    """A device setting that cannot be honoured, with the setting and what the machine has."""


def inventory() -> tuple[int, ...]:
    """The indices of this machine's GPUs: $ADVLAB_GPUS if set, else nvidia-smi's list (none without it)."""
    given = os.environ.get(GPUS_ENV)
    if given is not None:
        return parse_gpus(given, GPUS_ENV)
    return _nvidia_smi()


def parse_gpus(text: str, source: str) -> tuple[int, ...]:
    """"0,1,3" -> (0, 1, 3); "none" or "" -> (); anything else is a DeviceError naming `source`."""
    text = text.strip()
    if text.lower() in ("", "none"):
        return ()
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() and int(part) < MAX_GPUS for part in parts):
        raise DeviceError(f"{source}: give GPU indices 0..{MAX_GPUS - 1} separated by commas, or none; got {text!r}")
    if len(set(parts)) != len(parts):
        raise DeviceError(f"{source}: a GPU is named twice in {text!r}")
    return tuple(int(part) for part in parts)


@functools.cache
def _nvidia_smi() -> tuple[int, ...]:
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(i for i, line in enumerate(line for line in listing.splitlines() if line.startswith("GPU ")))


def visible() -> tuple[int, ...]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES's as a parent chose them, else the inventory."""
    chosen = os.environ.get(VISIBLE)
    if chosen is None:
        return inventory()
    try:
        return parse_gpus(chosen.replace("-1", ""), VISIBLE)
    except DeviceError:
        return ()  # GPU UUIDs or other forms: none this ledger can name


def describe_inventory(gpus: Sequence[int]) -> str:
    """"2 GPUs (0, 1)" or "no GPU", with where the list came from."""
    source = f"${GPUS_ENV}" if os.environ.get(GPUS_ENV) is not None else "nvidia-smi"
    if not gpus:
        return f"no GPU ({source})"
    return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(map(str, gpus))}; {source})"


def memory_limit_mb() -> int | None:
    """$ADVLAB_GPU_MEMORY_MB as a whole number of megabytes, or None (memory grows as needed)."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and 64 <= int(text) <= 10**7):
        raise DeviceError(f"{MEMORY_ENV}: give the megabytes each process may take on a GPU (64 or more), got {text!r}")
    return int(text)


def child_env(gpus: Sequence[int]) -> dict[str, str]:
    """The environment a child process needs to use exactly `gpus` (none: the CPU only), its memory
    growing as needed unless $ADVLAB_GPU_MEMORY_MB caps it (the child's `configure` applies the cap)."""
    env = {VISIBLE: ",".join(map(str, gpus)), ORDER: "PCI_BUS_ID"}
    if memory_limit_mb() is None:
        env[GROWTH] = "true"
    return env


def server_gpus() -> tuple[int, ...] | None:
    """The GPUs the server's own work (the Playground's attacks, Interpret, Compare) may use, by
    $ADVLAB_SERVER_DEVICE: auto (None: every GPU it sees), cpu (none) or gpu:N (that one, which must be
    in the inventory)."""
    setting = os.environ.get(SERVER_DEVICE_ENV, "auto").strip().lower()
    if setting == "auto":
        return None
    if setting == "cpu":
        return ()
    index = setting.removeprefix("gpu:")
    if setting.startswith("gpu:") and index.isascii() and index.isdigit():
        gpus = inventory()
        if int(index) in gpus:
            return (int(index),)
        raise DeviceError(f"{SERVER_DEVICE_ENV}={setting}: this machine has {describe_inventory(gpus)}")
    raise DeviceError(f"{SERVER_DEVICE_ENV}: give auto, cpu or gpu:N, got {setting!r}")


@functools.cache
def configure(only: tuple[int, ...] | None = None) -> None:
    """Sets this process's devices up, once; call before TensorFlow runs anything (it imports
    TensorFlow). `only` keeps this process to those GPUs (by the machine's numbering), leaving the
    environment its children inherit alone; None keeps every GPU it sees."""
    os.environ.setdefault(ORDER, "PCI_BUS_ID")
    import tensorflow as tf

    if only is not None:
        physical = tf.config.list_physical_devices("GPU")
        tf.config.set_visible_devices([physical[i] for i in only if i < len(physical)], "GPU")
    limit = memory_limit_mb()
    for gpu in tf.config.get_visible_devices("GPU"):
        if limit is None:
            tf.config.experimental.set_memory_growth(gpu, True)
        else:
            tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
