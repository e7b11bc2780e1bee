"""The evaluation worker: one long-lived process that runs queued evaluations one after another.

Evaluations are jobs in `<runs root>/_evaluations/<id>/` (the run store's layout: config.json holds
the plan, status.json the state). The worker keeps TensorFlow and recently used models loaded, so
an evaluation costs its attacks and not a process start-up (datasets stay loaded too); it exits after `idle_exit` seconds
without work. A job is claimed by creating its `claimed` file exclusively, so two workers never run
the same job. A job whose status turns `stopping` ends after its current slice of images, keeping
every finished cell. Each model that is a run's model also gets its results in the run's folder
(`evaluations/<job id>.json`).
"""

from __future__ import annotations

import functools
import os
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from advcore import files
from advcore.runs import Run, RunError, list_runs, now, process_start_ticks, runs_root

if TYPE_CHECKING:  # TensorFlow is imported by the worker only, not by pages that merely queue jobs
    from advcore import evaluation

EVALUATIONS_DIR = "_evaluations"  # not a valid run id, so the run list never shows it
MODEL_CACHE = 4


def evaluations_root(root=None) -> Path:
    return runs_root(root) / EVALUATIONS_DIR


def worker_file(root=None) -> Path:
    return evaluations_root(root) / "worker.json"


def submit(plan: evaluation.Plan, root=None, name: str = "evaluation") -> Run:
    job = Run.create(plan.to_dict(), evaluations_root(root), name)
    job.rename(name)
    return job


def _claim(job: Run) -> bool:
    try:
        os.close(os.open(job.path / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _next_job(root) -> Run | None:
    for job in reversed(list_runs(evaluations_root(root))):  # oldest first
        try:
            queued = job.recorded_status()["status"] == "queued"
        except RunError:
            continue
        if queued and _claim(job):
            return job
    return None


class _Models:
    """The last few models used, reloaded when their file changes."""

    def __init__(self):
        self.cache: dict[str, tuple[float, object]] = {}

    def __call__(self, path: str):
        from advcore import models

        modified = Path(path).stat().st_mtime
        if self.cache.get(path, (None,))[0] != modified:
            self.cache[path] = (modified, models.load(path))
            while len(self.cache) > MODEL_CACHE:
                self.cache.pop(next(iter(self.cache)))
        return self.cache[path][1]


def run_job(job: Run, root, load_model, load_dataset) -> str:
    from advcore import evaluation

    job.update_status(status="running", pid=os.getpid(), pid_start=process_start_ticks(os.getpid()), started=now())
    try:
        plan = evaluation.Plan.from_dict(job.config())
        outcome, results = evaluation.run_plan(
            plan, job.path, load_model=load_model, load_dataset=load_dataset,
            should_stop=lambda: job.recorded_status()["status"] == "stopping",
            report=lambda progress: files.write_json(job.progress_path, progress))
    except Exception as error:  # the job fails; the worker goes on with the next one
        with open(job.log_path, "a") as log:
            log.write(traceback.format_exc())
        job.update_status(status="failed", ended=now(), error=f"{type(error).__name__}: {error}")
        return "failed"
    _save_to_runs(results, job, root)
    job.update_status(status=outcome, ended=now())
    return outcome


def _save_to_runs(results: evaluation.Results, job: Run, root) -> None:
    for model in results.plan.models:
        if model.run:
            try:
                run = Run.open(model.run, runs_root(root))
            except RunError:
                continue  # the run was deleted meanwhile
            files.write_json(run.path / "evaluations" / f"{job.id}.json", results.to_dict() | {
                "cells": [row for row in results.rows if row["model"] == model.label],
                "flags": [flag for flag in results.flags if flag["model"] == model.label]})


def work(root=None, idle_exit: float = 300.0, poll: float = 0.05) -> None:
    files.write_json(worker_file(root), {"pid": os.getpid(), "pid_start": process_start_ticks(os.getpid()),
                                         "started": now()})
    from advcore import data

    load_model, load_dataset = _Models(), functools.lru_cache(maxsize=2)(data.load)
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_exit:
        job = _next_job(root)
        if job is None:
            time.sleep(poll)
            continue
        print(f"{now()} {job.id}: {run_job(job, root, load_model, load_dataset)}", flush=True)
        idle_since = time.monotonic()
