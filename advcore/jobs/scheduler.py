"""The training scheduler: one long-lived process per runs root that owns the queue of training runs.

Pages and scripts only queue runs (`Run.create`). The scheduler (`python -m advcore scheduler`, which
the app starts, and starts again if it died) launches each queued run as its own process
(`python -m advcore train --resume RUN`), oldest first, while fewer than `max_concurrent()` train. So
a queue moves with no browser open, and neither the server's restart nor a closed tab touches it. It
holds `<root>/_scheduler.lock` (one scheduler per root), and exits after `idle_exit` seconds with
nothing queued or training, or when its runs root is deleted. Given a Ray cluster (`--cluster`,
`$ADVLAB_CLUSTER`) it submits the queued runs as that cluster's jobs instead
(`advcore.jobs.ray_executor`), and Ray places them.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from advcore import devices
from advcore.jobs import cluster, gpus
from advcore.jobs.processes import spawn
from advcore.storage import files, locks
from advcore.storage.runs import (LIVE_STATUSES, Run, RunError, RunRefused, awaits_process, list_runs, now,
                                  on_this_host, process_start_ticks, runs_root, safe_status)
from advcore.training.config import GanConfig, TrainConfig, config_kind, upgraded
from advcore.training.resumption import resumable_from

MAX_RUNS_ENV = "ADVLAB_MAX_RUNS"
LOCK_FILE = "_scheduler.lock"  # not a run id (a leading "_"), and a file: the run list never shows it
LOG_FILE = "_scheduler.log"
CLUSTER_POLL_SECONDS = 2.0  # each poll asks the head about every live run: HTTP, not a file read
CLUSTER_STATE_SECONDS = 5.0  # how often the cluster's nodes and free resources are written for pages


def max_concurrent() -> int:
    """Runs training at once (default 1: on a small machine two only slow each other down; 0 holds
    every new run in the queue)."""
    try:
        return max(0, int(os.environ.get(MAX_RUNS_ENV, "1")))
    except ValueError:
        return 1


def lock_path(root=None) -> Path:
    return runs_root(root) / LOCK_FILE


def log_path(root=None) -> Path:
    return runs_root(root) / LOG_FILE


def _queue(root) -> tuple[int, list[Run]]:
    """How many runs have a live process on this host, and the runs waiting for one, oldest first. A
    process that cannot be proven the run's own (`Run.status`) holds no slot; another host's runs hold
    that host's slots, not these, and a Ray job's run the cluster's."""
    runs = list_runs(root)
    statuses = {run.id: safe_status(run) for run in runs}
    active = sum(1 for status in statuses.values()  # a Ray job's run holds the cluster's resources, not these
                 if status["status"] in LIVE_STATUSES and "pid" in status and on_this_host(status) and "job" not in status)
    waiting = [run for run in reversed(runs) if awaits_process(statuses[run.id])]
    return active, waiting


def has_work(root=None) -> bool:
    """Whether a run waits for a process that a free slot would give it."""
    active, waiting = _queue(root)
    return bool(waiting) and active < max_concurrent()


def launch(run: Run, gpus_given: tuple[int, ...] = ()) -> subprocess.Popen | None:
    """Starts the run's own training process on `gpus_given` (none: the CPU) and records it as the run's
    owner with its GPUs; a run whose process log cannot be opened safely (a link planted in its folder)
    fails with the reason instead."""
    try:
        command = "train-gan" if config_kind(run.config()) == "gan" else "train"
    except RunError:
        command = "train"  # the process reports the damaged config in the run
    try:
        process = spawn([command, "--resume", run.id, "--runs-dir", str(run.root.resolve())], run.process_log_path,
                        devices.child_env(gpus_given))
    except (files.FileProblem, OSError, devices.DeviceError) as problem:
        run.update_status(status="failed", ended=now(), error=f"not started: {problem}")
        return None
    run.update_status(pid=process.pid, pid_start=process_start_ticks(process.pid), launched=now(),
                      gpus=list(gpus_given))
    return process


def requeue(run: Run, more: int = 0) -> None:
    """Queues a stopped, failed or finished run again; the scheduler resumes it from its last complete
    epoch. `more` lengthens it first: more epochs, or more cycles for an interleaved schedule (a run
    that trains until stopped has no length to add). Raises RunRefused, RunError or ConfigError, and
    then leaves the run as it was."""
    status = run.status()
    if status["status"] in LIVE_STATUSES:
        raise RunRefused(f"run {run.id} is {status['status']}: it trains already")
    content, _ = upgraded(run.config())
    gan = config_kind(content) == "gan"
    config_class = GanConfig if gan else TrainConfig
    config = config_class.from_dict(content)
    length = "epochs" if gan else "schedule.cycles" if config.schedule.kind == "interleaved" else "schedule.epochs"
    section, leaf = (content, length) if gan else (content["schedule"], length.split(".")[1])
    if more and section.get(leaf) is not None:
        section[leaf] += more
        config = config_class.from_dict(content)
    resumable_from(run, config.epochs if gan else config.schedule.total_epochs)
    if config.to_dict() != run.config():
        files.write_json(run.config_path, config.to_dict())
    run.queue_again()


def start_queued(root=None, echo=print) -> tuple[list[subprocess.Popen], bool]:
    """Launches queued runs by the GPU slots' policy (`advcore.jobs.gpus`: oldest first, none starved)
    while run slots are free; returns the processes started and whether any run is training or waiting
    for a slot (work the scheduler must stay for)."""
    started = []
    with gpus.ledger(root):
        active, waiting = _queue(root)
        slots = max(0, max_concurrent() - active)
        try:
            inventory = devices.inventory()
        except devices.DeviceError as error:  # a mistyped $ADVLAB_GPUS: every run waits, the log says why
            echo(f"{now()} no run started: {error}")
            return started, bool(waiting)
        asks = {run.id: asked for run in waiting if (asked := _asked(run, inventory, echo)) is not None}
        free = sorted(set(inventory) - gpus.in_use(root))
        by_id = {run.id: run for run in waiting}
        for run_id, given in gpus.assign([(run.id, asks[run.id]) for run in waiting if run.id in asks], free, slots):
            process = launch(by_id[run_id], given)
            if process is None:
                echo(f"{now()} could not start {run_id}: {by_id[run_id].recorded_status().get('error')}")
                continue
            started.append(process)
            echo(f"{now()} started {run_id} (pid {process.pid}, " + (f"GPUs {', '.join(map(str, given))})" if given
                                                                      else "CPU)"))
    return started, bool(active or started or (asks and slots))


def _asked(run: Run, inventory, echo) -> int | None:
    """The GPUs a queued run asks for; a run asking for more than the machine has fails with the
    reason (it could never start, and would hold the queue), and is None."""
    try:
        return gpus.check_request(run.config(), inventory)
    except RunError:
        return 0  # its process reports the damaged config in the run
    except devices.DeviceError as error:
        run.update_status(status="failed", ended=now(), error=f"not started: {error}")
        echo(f"{now()} could not start {run.id}: {error}")
        return None


def serve(root=None, idle_exit: float = 300.0, poll: float = 0.5, echo=print, address: str | None = None) -> None:
    """The scheduler's loop: runs start as this machine's processes, or, given a Ray head's `address`,
    as that cluster's jobs. Raises locks.LockHeld when another scheduler serves this root, and
    cluster.ClusterError when the cluster cannot take the runs."""
    root = runs_root(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with locks.hold(lock_path(root), wait=2.0):
        try:
            ray_cluster = _connect(address, root) if address else None
        except cluster.ClusterError as error:
            cluster.write_state(root, address, error=str(error))  # the Train page says why nothing starts
            raise
        echo(f"{now()} scheduler (pid {os.getpid()}) for {root}: " +
             (f"Ray cluster at {address}, dashboard {ray_cluster.dashboard_url}" if ray_cluster
              else f"{max_concurrent()} run(s) at a time"))
        children: list[subprocess.Popen] = []
        idle_since, described = time.monotonic(), -CLUSTER_STATE_SECONDS
        try:
            while root.is_dir():
                if ray_cluster:
                    busy = ray_cluster.submit_queued(echo) > 0
                    busy = ray_cluster.reconcile(echo) or busy
                    if time.monotonic() - described >= CLUSTER_STATE_SECONDS:
                        cluster.write_state(root, address, **ray_cluster.describe())
                        described = time.monotonic()
                else:
                    children = [child for child in children if child.poll() is None]  # reaped: no zombies
                    started, busy = start_queued(root, echo)
                    children += started
                if busy:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= idle_exit:
                    break
                time.sleep(max(poll, CLUSTER_POLL_SECONDS) if ray_cluster else poll)
        finally:
            if ray_cluster:
                ray_cluster.close()
        echo(f"{now()} scheduler (pid {os.getpid()}) exits: " + ("idle" if root.is_dir() else "runs root deleted"))


def _connect(address: str, root: Path):
    from advcore.jobs import ray_executor  # only here: the local path never imports Ray

    return ray_executor.RayCluster.connect(address, root)


def ensure(root=None) -> subprocess.Popen | None:
    """Starts the scheduler for `root` unless one is alive; returns the process started, for the caller
    to reap."""
    if locks.holder(lock_path(root)) is not None:
        return None
    root = runs_root(root).resolve()
    return spawn(["scheduler", "--runs-dir", str(root)], log_path(root))
