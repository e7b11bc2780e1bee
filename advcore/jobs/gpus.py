"""GPU slots: how many GPUs a job asks for, which are free, and which queued runs start on which.

The order policy: queued runs are taken oldest first. A run starts when enough GPUs are free for it
(and a run slot, `ADVLAB_MAX_RUNS`); it gets the lowest-numbered free ones, alone. The oldest run that
must wait reserves the GPUs it asks for: a younger run may start only on GPUs beyond that reservation,
so a run asking for four GPUs is never passed over forever by a stream of one-GPU runs. A run asking
for no GPU (the CPU) needs only a run slot.

GPUs in use are those recorded by this host's live runs (`status.json` "gpus") and by the evaluation
worker (`worker.json`). Choosing and recording happen under one lock, so the scheduler and a page
starting the worker never hand out one GPU twice.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

from advcore import devices
from advcore.storage import locks
from advcore.storage.runs import LIVE_STATUSES, list_runs, on_this_host, runs_root, safe_status

LOCK_FILE = "_gpus.lock"


def requested(content: dict, inventory: Sequence[int]) -> int:
    """The GPUs a run's config asks for: distribute.gpus as given, "all" of them, or by default one
    when the machine has a GPU and none when it has not."""
    distribute = content.get("distribute") if isinstance(content, dict) else None
    asked = distribute.get("gpus") if isinstance(distribute, dict) else None
    if asked is None:
        return 1 if inventory else 0
    if asked == "all":
        return len(inventory)
    if isinstance(asked, bool) or not isinstance(asked, int) or not 0 <= asked <= devices.MAX_GPUS:
        raise devices.DeviceError(f"distribute.gpus: give 0..{devices.MAX_GPUS} or \"all\", got {asked!r}")
    return asked


def workers(content: dict) -> int:
    """The processes a run's config asks to train it together (distribute.workers, default 1)."""
    distribute = content.get("distribute") if isinstance(content, dict) else None
    asked = distribute.get("workers", 1) if isinstance(distribute, dict) else 1
    if isinstance(asked, bool) or not isinstance(asked, int) or not 1 <= asked <= devices.MAX_GPUS:
        raise devices.DeviceError(f"distribute.workers: give 1..{devices.MAX_GPUS}, got {asked!r}")
    return asked


def check_request(content: dict, inventory: Sequence[int], holder: str = "") -> int:
    """The GPUs asked for (each worker's), or a DeviceError naming the inventory when the machine (or
    `holder`: "the cluster's largest node") has fewer, or when this machine is asked for several
    workers (it runs one process per run: several are a Ray cluster's)."""
    if not holder and workers(content) > 1:
        raise devices.DeviceError(f"distribute.workers: {workers(content)} workers train on a Ray cluster's nodes: "
                                  "queue the run with --cluster HOST:PORT (or $ADVLAB_CLUSTER); this machine "
                                  "trains a run in one process")
    asked = requested(content, inventory)
    if asked > len(inventory):
        held = f"{holder} has {len(inventory)}" if holder else f"this machine has {devices.describe_inventory(inventory)}"
        raise devices.DeviceError(f"distribute.gpus: the run asks for {asked} GPU{'s' if asked > 1 else ''}; {held}")
    return asked


def recorded(status: dict) -> tuple[int, ...]:
    """The GPUs a status (or worker record) says its process holds; () when none or malformed."""
    gpus = status.get("gpus")
    if isinstance(gpus, list) and all(isinstance(g, int) and not isinstance(g, bool) and 0 <= g < devices.MAX_GPUS
                                      for g in gpus):
        return tuple(gpus)
    return ()


def in_use(root) -> set[int]:
    """GPUs held by this host's live runs and by its evaluation worker."""
    from advcore.evaluation import worker  # the worker module imports no TensorFlow at the top

    held = set(recorded(worker.live_record(root) or {}))
    for run in list_runs(root):
        status = safe_status(run)
        if status["status"] in LIVE_STATUSES and "pid" in status and on_this_host(status):
            held.update(recorded(status))
    return held


def assign(waiting: Sequence[tuple[str, int]], free: Sequence[int], slots: int) -> list[tuple[str, tuple[int, ...]]]:
    """The policy, on its own: `waiting` is (job, GPUs asked) oldest first; returns (job, its GPUs) for
    each job that starts now."""
    free, reserved, started = sorted(free), 0, []
    for job, asked in waiting:
        if len(started) >= slots:
            break
        if asked == 0 or asked <= len(free) - reserved:
            given, free = tuple(free[:asked]), free[asked:]
            started.append((job, given))
        else:
            reserved += asked  # it waits, and nothing younger takes what it needs
    return started


@contextlib.contextmanager
def ledger(root) -> Iterator[None]:
    """Held while GPUs are chosen and recorded."""
    path = runs_root(root) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with locks.hold(Path(path), wait=30.0):
        yield
