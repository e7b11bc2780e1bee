"""Jobs for the pages: training runs and evaluations. Pages call this, never `subprocess`.

Each training run trains in its own OS process (`python -m advcore train --resume RUN`); queued
evaluations are run by one long-lived worker process (`python -m advcore worker`) that keeps
TensorFlow and models loaded. Both run in sessions of their own, so a browser refresh or a
Streamlit rerun never touches them. State lives in the run store only; any page, tab or browser
sees the same jobs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from advcore.evaluation import worker
from advcore.storage import files
from advcore.training.config import GanConfig, TrainConfig, config_kind

if TYPE_CHECKING:
    from advcore.evaluation import plans

from advcore.storage.runs import (LIVE_STATUSES, Run, RunError, list_runs, now, process_alive, process_start_ticks,
                                  runs_root)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MAX_RUNS_ENV = "ADVLAB_MAX_RUNS"
_children: dict[int, subprocess.Popen] = {}  # processes this server started, reaped on refresh
_lock = threading.Lock()  # Streamlit serves every session from threads of one process


def max_concurrent() -> int:
    """Runs training at once (default 1: on a small machine two only slow each other down; 0 holds
    every new run in the queue)."""
    try:
        return max(0, int(os.environ.get(MAX_RUNS_ENV, "1")))
    except ValueError:
        return 1


def submit(config: TrainConfig | GanConfig, root: Path | None = None) -> Run:
    """Records a validated config as a queued run and starts it if a slot is free."""
    run = Run.create(config.to_dict(), runs_root(root), config.name)
    refresh(root)
    return run


def _safe_status(run: Run) -> dict:
    try:
        return run.status()
    except RunError:
        return {"status": "damaged"}


def refresh(root: Path | None = None) -> None:
    """Reaps finished children and starts the oldest queued runs while slots are free."""
    with _lock:
        _reap()
        runs = list_runs(root)
        statuses = {run.id: _safe_status(run) for run in runs}
        active = sum(1 for s in statuses.values() if s["status"] in LIVE_STATUSES and "pid" in s)
        waiting = [run for run in reversed(runs)
                   if statuses[run.id]["status"] == "queued" and "pid" not in statuses[run.id]]
        for run in waiting[:max(0, max_concurrent() - active)]:
            _launch(run)


def _reap() -> None:
    """Collects the exit status of children that ended, so none lingers as a zombie."""
    for pid, process in list(_children.items()):
        if process.poll() is not None:
            del _children[pid]


def _spawn(arguments: list[str], log_path: Path) -> subprocess.Popen:
    """`python -m advcore ...` in a session of its own, its output appended to `log_path`."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
                        "TF_CPP_MIN_LOG_LEVEL": "2"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "advcore", *arguments], cwd=PROJECT_ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    _children[process.pid] = process
    return process


def _launch(run: Run) -> None:
    try:
        command = "train-gan" if config_kind(run.config()) == "gan" else "train"
    except RunError:
        command = "train"  # the process reports the damaged config in the run
    process = _spawn([command, "--resume", run.id, "--runs-dir", str(run.root.resolve())], run.process_log_path)
    run.update_status(pid=process.pid, pid_start=process_start_ticks(process.pid), launched=now())


def stop(run: Run) -> str:
    """Asks a run to stop: a queued run stops at once, a training one after its current batch."""
    status = run.status()
    if status["status"] not in LIVE_STATUSES:
        raise RunError(f"run {run.id} is {status['status']}, not running")
    if "pid" in status:
        try:
            os.kill(status["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    if status["status"] == "queued":  # not training yet: nothing to save
        run.update_status(status="stopped", ended=now(), reason="stopped before training began")
        return "stopped"
    return "stopping"


def delete(run: Run) -> None:
    if _safe_status(run)["status"] in LIVE_STATUSES:
        raise RunError(f"run {run.id} is still active: stop it before deleting it")
    shutil.rmtree(run.path)


# ----------------------------------------------------------------------------- evaluations

def submit_evaluation(plan: plans.Plan, root: Path | None = None, name: str = "evaluation") -> Run:
    """Queues a checked plan for the evaluation worker, starting the worker if none runs."""
    job = worker.submit(plan, root, name)
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
        waiting = any(_safe_status(job)["status"] == "queued" for job in _worker_jobs(root))
        _reap()
        try:
            record = files.read_json(worker.worker_file(root), "worker record")
            alive = process_alive(record["pid"], record.get("pid_start"))
        except (files.FileProblem, KeyError):
            alive = False
        if waiting and not alive:
            evaluations = worker.evaluations_root(root)
            process = _spawn(["worker", "--runs-dir", str(runs_root(root).resolve())], evaluations / "worker.log")
            files.write_json(worker.worker_file(root), {"pid": process.pid, "starting": now(),
                                                        "pid_start": process_start_ticks(process.pid)})


def stop_evaluation(job: Run) -> str:
    """A queued evaluation stops at once; a running one after its current slice of images."""
    status = _safe_status(job)["status"]
    if status == "queued":
        job.update_status(status="stopped", ended=now(), reason="stopped before it began")
        return "stopped"
    if status != "running":
        raise RunError(f"evaluation {job.id} is {status}, not running")
    job.update_status(status="stopping")
    return "stopping"
