"""The evaluation worker: one long-lived process that runs queued evaluations and model profiles in turn.

Evaluations are jobs in `<runs root>/_evaluations/<id>/` (the run store's layout: config.json holds
the plan, status.json the state). The worker keeps TensorFlow and recently used models loaded, so
an evaluation costs its attacks and not a process start-up (datasets stay loaded too); it exits after `idle_exit` seconds
without work, as soon as it is idle on a GPU while a training run waits in the queue, or when its
folder is deleted. A job is claimed by creating its `claimed` file exclusively, so two workers never run
the same job. A job whose status turns `stopping` ends after its current slice of images, keeping
every finished cell. Each model that is a run's model also gets its results in the run's folder
(`evaluations/<job id>.json`). A profile job (`advcore.evaluation.profile`) writes into the profile cache.
"""

from __future__ import annotations

import functools
import os
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from advcore.storage import files
from advcore.storage.runs import (Run, RunError, awaits_process, list_runs, now, process_alive, process_start_ticks,
                                  runs_advcore, runs_root, safe_status)

if TYPE_CHECKING:  # TensorFlow is imported by the worker only, not by pages that merely queue jobs
    from advcore.evaluation import plans

EVALUATIONS_DIR = "_evaluations"  # not a valid run id, so the run list never shows it
PROFILES_DIR = "_profiles"  # the cache of model profiles (evaluation.profile): a folder per model file and settings
PROFILE = "profile"  # the `kind` of a profile job's config; an evaluation's config is its plan


def evaluations_root(root=None) -> Path:
    return runs_root(root) / EVALUATIONS_DIR


def profiles_root(root=None) -> Path:
    return runs_root(root) / PROFILES_DIR


def worker_file(root=None) -> Path:
    return evaluations_root(root) / "worker.json"


def live_record(root=None) -> dict | None:
    """The evaluation worker's record (pid, start, GPUs) while its process is alive and AdvLab's, else None."""
    try:
        record = files.read_json(worker_file(root), "worker record")
        alive = process_alive(record["pid"], record.get("pid_start")) and runs_advcore(record["pid"])
    except (files.FileProblem, KeyError, TypeError):
        return None
    return record if alive else None


SHARDS = "shards"  # in an evaluation's config beside its plan: the shards asked of a cluster (None: its default)


def submit(plan: plans.Plan, root=None, name: str = "evaluation", shards: int | None = None) -> Run:
    return _queue(plan.to_dict() | ({SHARDS: shards} if shards else {}), root, name)


def submit_profile(model_path, dataset: str, settings: dict, folder, root=None, name: str = "profile") -> Run:
    """Queues the profile of one model file, to be saved in `folder` (see `advcore.evaluation.profile.folder_for`)."""
    return _queue({"kind": PROFILE, "model": str(model_path), "dataset": dataset, "settings": settings,
                   "folder": str(folder)}, root, name)


def _queue(config: dict, root, name: str) -> Run:
    job = Run.create(config, evaluations_root(root), name)
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


class _Stopped(Exception):
    """A profile job was asked to stop; raised at its next progress report (between stages, AutoAttack's
    members and ARA's batches)."""


def run_job(job: Run, root, load_model, load_dataset, address: str | None = None) -> str:
    """Runs a claimed job, here or, given a Ray head's `address`, in shards on that cluster."""
    job.update_status(status="running", pid=os.getpid(), pid_start=process_start_ticks(os.getpid()), started=now())
    try:
        config = job.config()
        if config.get("kind") == PROFILE:
            outcome = _run_profile(config, job, root, load_model, load_dataset, address)
        else:
            outcome = _run_evaluation(config, job, root, load_model, load_dataset, address)
    except Exception as error:  # the job fails; the worker goes on with the next one
        try:
            with files.open_append(job.log_path) as log:
                log.write(traceback.format_exc())
        except (OSError, files.FileProblem):
            pass  # the error itself goes into status.json below
        job.update_status(status="failed", ended=now(), error=f"{type(error).__name__}: {error}")
        return "failed"
    job.update_status(status=outcome, ended=now())
    return outcome


def _stopping(job: Run) -> bool:
    return job.recorded_status()["status"] == "stopping"


def _run_evaluation(config: dict, job: Run, root, load_model, load_dataset, address: str | None) -> str:
    from advcore.evaluation import plans

    plan = plans.Plan.from_dict(config)
    files.write_json(job.progress_path, {"cell": "loading the models and the test images"})
    run = functools.partial(plans.run_plan, plan, job.path)
    if address:
        from advcore.jobs import ray_evaluation  # only here: the local path never imports Ray

        run = functools.partial(ray_evaluation.run_sharded, plan, job.path, address, shards_asked=config.get(SHARDS))
    outcome, results = run(load_model=load_model, load_dataset=load_dataset, should_stop=lambda: _stopping(job),
                           report=lambda progress: files.write_json(job.progress_path, progress))
    _save_to_runs(results, job, root)
    return outcome


def _run_profile(config: dict, job: Run, root, load_model, load_dataset, address: str | None) -> str:
    """Computes a model's profile into its cache folder, here or in shards on the cluster at `address`."""
    from advcore.evaluation import profile
    from advcore.interpret import alignment

    settings = profile.ProfileSettings.from_dict(config["settings"])
    judge = alignment.judge_path(config["dataset"])
    if address:
        from advcore.jobs import ray_evaluation  # only here: the local path never imports Ray

        computed = ray_evaluation.profile_sharded(
            config["model"], config["dataset"], settings, address, judge_path=str(judge) if judge else None,
            should_stop=lambda: _stopping(job), report=lambda progress: files.write_json(job.progress_path, progress),
            load_model=load_model, load_dataset=load_dataset)
    else:
        computed = _profile_here(config, settings, judge, job, load_model, load_dataset)
    if computed is None:
        return "stopped"
    profile.save(config["folder"], *computed)
    return "finished"


def _profile_here(config: dict, settings, judge: Path | None, job: Run, load_model, load_dataset) -> tuple | None:
    """`profile.compute` in this process, None when asked to stop (at its next progress report)."""
    from advcore import models
    from advcore.evaluation import profile

    began = time.monotonic()

    def report(stage: str, fraction: float) -> None:
        if _stopping(job):
            raise _Stopped
        files.write_json(job.progress_path, {"done": round(100 * fraction), "total": 100, "unit": "%",
                                             "cell": stage, "elapsed": time.monotonic() - began})

    try:
        model = load_model(config["model"])
        dataset = load_dataset(config["dataset"], image_size=models.input_size(model))
        return profile.compute(model, dataset, settings, judge=load_model(str(judge)) if judge else None,
                               report=report)
    except _Stopped:
        return None


def _save_to_runs(results: plans.Results, job: Run, root) -> None:
    for model in results.plan.models:
        if model.run:
            try:
                run = Run.open(model.run, runs_root(root))
            except RunError:
                continue  # the run was deleted meanwhile
            files.write_json(run.path / "evaluations" / f"{job.id}.json", results.to_dict() | {
                "cells": [row for row in results.rows if row["model"] == model.label],
                "flags": [flag for flag in results.flags if flag["model"] == model.label]})


def work(root=None, idle_exit: float = 300.0, poll: float = 0.05, address: str | None = None) -> None:
    """Runs queued jobs until idle for `idle_exit` seconds; evaluations in shards on the Ray cluster at
    `address`, if given."""
    from advcore import devices, models
    from advcore.storage import data

    holds_gpu = bool(devices.visible())
    files.write_json(worker_file(root), {"pid": os.getpid(), "pid_start": process_start_ticks(os.getpid()),
                                         "started": now(), "gpus": list(devices.visible()),
                                         **({"cluster": address} if address else {})})
    load_model, load_dataset = models.ModelCache(), functools.lru_cache(maxsize=2)(data.load)
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_exit and evaluations_root(root).is_dir():  # gone: nothing to do
        job = _next_job(root)
        if job is None:
            # a queued run may want this GPU (a process gives its GPU memory back only by ending); on a
            # cluster, runs go to the cluster's nodes
            if holds_gpu and not address and any(awaits_process(safe_status(run)) for run in list_runs(runs_root(root))):
                break
            time.sleep(poll)
            continue
        print(f"{now()} {job.id}: {run_job(job, root, load_model, load_dataset, address)}", flush=True)
        idle_since = time.monotonic()
