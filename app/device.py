"""The server's devices: its own set-up, and what the machine, or the Ray cluster, offers training
(found without TensorFlow; the cluster as its scheduler last described it)."""

from __future__ import annotations

import functools
import os
import subprocess
import time

from advcore import devices
from advcore.jobs import cluster, gpus, scheduler
from app.text import counted, literal

UNDESCRIBED_GPUS = 8  # what the form offers on a cluster its scheduler has not described yet
STALE_SECONDS = 60.0  # a cluster description older than this: its scheduler is not running


def machine_gpus() -> tuple[tuple[int, ...], str | None]:
    """The GPU inventory, and what is wrong with $ADVLAB_GPUS when it cannot be read (then no GPU)."""
    try:
        return devices.inventory(), None
    except devices.DeviceError as error:
        return (), str(error)


def cluster_choice() -> tuple[str | None, str | None]:
    """The Ray head's address runs go to ($ADVLAB_CLUSTER; None: this machine), and what is wrong with
    the variable when it cannot be read."""
    try:
        return cluster.cluster_address(), None
    except cluster.ClusterError as error:
        return None, str(error)


def executor_text(root) -> str:
    """Where queued runs go, in a line of markdown: this machine's scheduler, or the Ray cluster with its
    nodes and free resources as its scheduler last wrote them."""
    address, problem = cluster_choice()
    if problem:
        return f"Executor: none, queued runs wait: {literal(problem)}"
    if address is None:
        at_once = scheduler.max_concurrent()
        return ("Executor: **this machine**, " + (f"{counted(at_once, 'run')} at a time" if at_once else
                                                  "holding queued runs (ADVLAB_MAX_RUNS is 0)"))
    head = f"Executor: **Ray cluster at {literal(address)}**"
    state = cluster.read_state(root)
    if state.get("address") != address:
        return f"{head}, not connected yet: its scheduler connects when a run is queued"
    if state.get("error"):
        return f"{head}, not connected: {literal(state['error'])}"
    text = (f"{head} · {counted(len(state['nodes']), 'node')} · CPUs {state.get('free_cpus', 0):g} of "
            f"{state.get('total_cpus', 0):g} free · GPUs {state.get('free_gpus', 0):g} of {state.get('total_gpus', 0):g} free")
    if state["dashboard"]:
        text += f" · [Ray dashboard]({state['dashboard']})"
    if time.time() - state.get("written", 0) > STALE_SECONDS:
        text += f" · as of {literal(str(state.get('updated', '?'))[:19])}, its scheduler is not running"
    return text


def shards_offer(root) -> tuple[int, str] | None:
    """On a Ray cluster, an evaluation's default shards and why (one per GPU, else per
    $ADVLAB_SHARD_CPUS CPUs, of the cluster as its scheduler last described it); None off a cluster."""
    address, problem = cluster_choice()
    if problem or not address:
        return None
    state = cluster.read_state(root)
    if state.get("address") != address or state.get("error"):
        return 2, "The cluster is not described yet (its scheduler does so once connected): 2 by default"
    try:
        shards = cluster.default_shards(state.get("total_gpus", 0), state.get("total_cpus", 0))
    except cluster.ClusterError as error:
        return 1, literal(str(error))
    per = "GPU" if state.get("total_gpus", 0) >= 1 else f"{counted(cluster.shard_cpus(), 'CPU')}"
    return shards, f"One per {per} of the cluster: {shards} by default"


def gpu_offer(root) -> tuple[tuple[int, ...], str, str, str | None]:
    """What a run may ask for: GPU indices (this machine's, or on a Ray cluster as many as its largest
    node has, as last described), who holds them (for messages: "" is this machine), a line on how
    many are free, and what is wrong with $ADVLAB_GPUS or $ADVLAB_CLUSTER."""
    address, problem = cluster_choice()
    if problem:
        return (), "", "", problem
    if address:
        state = cluster.read_state(root)
        most = cluster.most_gpus(state) if state.get("address") == address else None
        if most is None:
            return (tuple(range(UNDESCRIBED_GPUS)), cluster.LARGEST_NODE, "the cluster's GPUs are not known yet (its scheduler describes "
                    "them once connected); a run no node can take fails with the reason", None)
        return (tuple(range(most)), cluster.LARGEST_NODE, f"{counted(most, 'GPU')} on the cluster's largest node, "
                f"{state.get('free_gpus', 0):g} of {state.get('total_gpus', 0):g} free on the cluster now", None)
    inventory, problem = machine_gpus()
    free = len(set(inventory) - gpus.in_use(root))
    return inventory, "", f"{free} of {len(inventory)} GPUs free now", problem


def training_device() -> str:
    """What the machine offers training: "GPU: 2 x NVIDIA A100 (0, 1)" or the CPU; or the Ray cluster."""
    address = cluster_choice()[0]
    if address:
        return f"the Ray cluster at {address} (its nodes' GPUs)"
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
