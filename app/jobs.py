"""Jobs for the pages: training runs and evaluations. Pages call this, never `subprocess`.

Pages only queue work and read it. Queued training runs are started by the training scheduler
(`advcore.jobs.scheduler`, `python -m advcore scheduler`), each in its own OS process; queued
evaluations are run by one long-lived worker process (`python -m advcore worker`) that keeps
TensorFlow and models loaded. Both live in sessions of their own, so a browser refresh, a closed tab
or the server's restart never touches them. A watcher thread of the server starts the scheduler again
if it died while runs wait. State lives in the run store only; any page, tab or browser sees the same
jobs."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from advcore.evaluation import worker
from advcore import devices
from advcore.jobs import cluster, gpus, scheduler
from advcore.jobs.processes import spawn
from advcore.storage import files
from advcore.training.config import GanConfig, TrainConfig

if TYPE_CHECKING:
    from advcore.evaluation import plans

from advcore.storage.runs import (LIVE_STATUSES, Run, RunError, list_runs, now, on_this_host, process_start_ticks, runs_root,
                                  safe_status)

WATCH_SECONDS = 5.0  # how soon a dead scheduler is started again while runs wait
_children: list[subprocess.Popen] = []  # processes this server started, reaped so none lingers as a zombie
_lock = threading.Lock()  # Streamlit serves every session from threads of one process
max_concurrent = scheduler.max_concurrent


def submit(config: TrainConfig | GanConfig, root: Path | None = None) -> Run:
    """Records a validated config as a queued run; the scheduler starts it when a slot and its GPUs are
    free. A run asking for more GPUs than the machine has is refused (devices.DeviceError) first; on a
    Ray cluster ($ADVLAB_CLUSTER) the cluster's scheduler judges that, and fails a run no node can take."""
    if cluster.cluster_address() is None:
        gpus.check_request(config.to_dict(), devices.inventory())
    run = Run.create(config.to_dict(), runs_root(root), config.name)
    ensure_scheduler(root)
    return run


def ensure_scheduler(root: Path | None = None) -> None:
    """Starts the training scheduler unless it is alive, and keeps watching it while this server lives
    (unless no run may train: a limit of 0)."""
    if max_concurrent() == 0:
        return
    with _lock:
        _reap()
        process = scheduler.ensure(root)
        if process is not None:
            _children.append(process)
    _watch(runs_root(root).resolve())


@functools.cache
def _watch(root: Path) -> threading.Thread:
    thread = threading.Thread(target=_watch_loop, args=(root,), daemon=True, name=f"scheduler watcher {root}")
    thread.start()
    return thread


def _watch_loop(root: Path) -> None:
    while True:
        time.sleep(WATCH_SECONDS)
        try:
            if root.is_dir() and scheduler.has_work(root):
                ensure_scheduler(root)
        except OSError:
            continue  # a runs root being deleted under us: try again later


def _reap() -> None:
    _children[:] = [process for process in _children if process.poll() is None]


def resume(run: Run, more: int = 0, root: Path | None = None) -> None:
    """Queues an ended run again from its last complete epoch, `more` epochs (or cycles) longer; the
    scheduler starts it. Raises RunError or ConfigError, the run left as it was."""
    scheduler.requeue(run, more)
    ensure_scheduler(root)


def stop(run: Run) -> str:
    """Asks a run to stop, and says what happened: a queued run stops at once, a training one after its
    current batch. Only a process proven to be the run's own (`Run.owner`) is signalled. A process on
    another machine (a Ray job's) is asked through the run's folder (`Run.request_stop`), which it reads
    after each batch; a process of this machine that cannot be proven the run's own is not signalled,
    and the answer says so."""
    status = run.status()
    if status["status"] not in LIVE_STATUSES:
        raise RunError(f"run {run.id} is {status['status']}, not running")
    owner = run.owner(status)
    if owner is not None:
        try:
            os.kill(owner, signal.SIGTERM)
        except ProcessLookupError:
            pass
    remote = owner is None and ("job" in status or not on_this_host(status))
    if remote:
        run.request_stop()  # a submitted job that has not begun yet trains nothing when it does
    if status["status"] == "queued":  # not training yet: nothing to save
        run.update_status(status="stopped", ended=now(), reason="stopped before training began")
        return f"run {run.id} stopped"
    if remote and status.get("workers", 1) != 1:
        return (f"run {run.id} asked to stop through its folder: its workers stop at the end of the epoch under way, "
                "which is kept (no process of this machine was signalled)")
    if remote:
        return (f"run {run.id} asked to stop through its folder: its process on {status.get('host', 'its node')} "
                "stops after its current batch (no process of this machine was signalled)")
    if owner is None:
        run.update_status(status="stopping")
        return (f"run {run.id} marked stopping, but its process (pid {status.get('pid', 'unknown')}) could not be "
                "proven to be the run's own, so it was not signalled")
    return f"run {run.id} stopping after its current batch"


def delete(run: Run) -> None:
    """Deletes an ended run's folder; a symbolic link is never a run, and what the folder holds is removed
    without following any link in it."""
    if run.path.is_symlink():
        raise RunError(f"{run.path} is a symbolic link, not a run: AdvLab neither lists nor deletes it")
    if safe_status(run)["status"] in LIVE_STATUSES:
        raise RunError(f"run {run.id} is still active: stop it before deleting it")
    try:
        shutil.rmtree(run.path)
    except OSError as error:
        raise RunError(f"run {run.id} could not be deleted entirely ({error.strerror}: {error.filename})") from None


# ----------------------------------------------------------------------------- evaluations

def submit_evaluation(plan: plans.Plan, root: Path | None = None, name: str = "evaluation",
                      shards: int | None = None) -> Run:
    """Queues a checked plan for the evaluation worker, starting the worker if none runs; on a Ray
    cluster the worker runs it in `shards` (None: the cluster's default)."""
    job = worker.submit(plan, root, name, shards)
    ensure_worker(root)
    return job


def list_evaluations(root: Path | None = None) -> list[Run]:
    """The Evaluate page's jobs (the worker's profile jobs are the Compare page's)."""
    return [job for job in _worker_jobs(root) if _kind(job) != worker.PROFILE]


def _worker_jobs(root: Path | None) -> list[Run]:
    return list_runs(worker.evaluations_root(root))


def _kind(job: Run) -> str | None:
    try:
        return job.config().get("kind")
    except RunError:
        return None


PROFILE_JOB_FILE = "job.json"  # in a profile's folder: the id of the newest job queued to compute it


def profile_job(folder: Path, root: Path | None = None) -> Run | None:
    """The newest job computing the profile for `folder`, if one was ever queued (and not deleted)."""
    try:
        return Run.open(files.read_json(folder / PROFILE_JOB_FILE, "profile job")["id"],
                        worker.evaluations_root(root))
    except (files.FileProblem, KeyError, RunError):
        return None


def submit_profile(model_path: Path, dataset: str, settings: dict, folder: Path, root: Path | None = None,
                   name: str = "profile") -> Run:
    """Queues a model's profile for the worker (starting it if needed); the result lands in `folder`."""
    job = worker.submit_profile(model_path, dataset, settings, folder, root, name)
    files.write_json(folder / PROFILE_JOB_FILE, {"id": job.id})
    ensure_worker(root)
    return job


def ensure_worker(root: Path | None = None) -> None:
    """Starts the evaluation worker when evaluations wait and no worker is alive."""
    with _lock:
        waiting = any(safe_status(job)["status"] == "queued" for job in _worker_jobs(root))
        _reap()
        if waiting and worker.live_record(root) is None:
            with gpus.ledger(root):  # its GPU: the first one free, else the CPU
                given = sorted(set(devices.inventory()) - gpus.in_use(root))[:1]
                evaluations = worker.evaluations_root(root)
                process = spawn(["worker", "--runs-dir", str(runs_root(root).resolve())], evaluations / "worker.log",
                                devices.child_env(given))
                _children.append(process)
                files.write_json(worker.worker_file(root), {"pid": process.pid, "starting": now(), "gpus": given,
                                                            "pid_start": process_start_ticks(process.pid)})


def stop_evaluation(job: Run) -> str:
    """A queued evaluation stops at once; a running one after its current slice of images."""
    status = safe_status(job)["status"]
    if status == "queued":
        job.update_status(status="stopped", ended=now(), reason="stopped before it began")
        return "stopped"
    if status != "running":
        raise RunError(f"evaluation {job.id} is {status}, not running")
    job.update_status(status="stopping")
    return "stopping"
