"""A run trained by several workers on a Ray cluster: its Ray job's process drives Ray Train's
`TensorflowTrainer`, which starts `distribute.workers` processes on the cluster's nodes (one CPU and
the run's GPUs each) and gives each the TF_CONFIG of the existing MultiWorkerMirroredStrategy path.
Each worker runs the CLI's `train --resume RUN` in its process: the chief (worker 0) writes the run;
the others resume from a private copy (`Run.private_copy`) and write nothing there.

The workers agree on every step, so one of them cannot leave an epoch alone: a stop asked through
the run's folder is the chief's, at the end of the epoch under way (`runner.EpochControl`), which it
records and saves; this process then ends the group, whose other workers wait for the chief in vain.
A worker that dies ends the group too, and the run fails with the reason; resume continues from its
last finished epoch.

Imported only in a cluster job's process.
"""

from __future__ import annotations

import os
import threading

from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.tensorflow import TensorflowTrainer

from advcore import devices
from advcore.jobs.cluster import ATTEMPT_ENV
from advcore.storage.runs import LIVE_STATUSES, Run, now

POLL_SECONDS = 1.0


def _worker(config: dict) -> None:
    """One worker: the CLI's own training path for the driver's parsed arguments, on the GPUs Ray gave
    it (none: the CPU), with its devices set up before TensorFlow runs anything."""
    import ray

    os.environ.pop(ATTEMPT_ENV, None)  # the job's attempt was checked by the driver, before the group began
    os.environ.setdefault(devices.VISIBLE, ",".join(map(str, ray.get_gpu_ids())))
    devices.configure()
    from advcore.cli import train_commands

    train_commands.run(config["args"])


def train(run: Run, workers: int, gpus_each: int, args) -> int:
    """Trains `run` with `workers` processes of `gpus_each` GPUs, each given the CLI's parsed `args`
    (train --resume RUN); returns this process's exit status."""
    trainer = TensorflowTrainer(
        _worker, train_loop_config={"args": args},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_each > 0,
                                     resources_per_worker={"CPU": 1, "GPU": gpus_each} if gpus_each else {"CPU": 1}),
        run_config=RunConfig(name=os.environ.get(ATTEMPT_ENV, run.id), storage_path=str(run.path / "ray_train"),
                             failure_config=FailureConfig(max_failures=0)))
    outcome: dict = {}
    group = threading.Thread(target=_fit, args=(trainer, outcome), daemon=True)
    group.start()
    while group.is_alive():
        group.join(POLL_SECONDS)
        ended = run.recorded_status().get("status")
        if group.is_alive() and ended not in LIVE_STATUSES:  # the chief stopped: the others wait for it in vain
            print(f"run {run.id} {ended}; its worker group ends with this process", flush=True)
            return 0  # the group's actors are this driver's: they end with it
    if "error" in outcome:
        if run.recorded_status().get("status") in LIVE_STATUSES:
            run.update_status(status="failed", ended=now(), error=f"a worker failed: {outcome['error']}")
        print(f"run {run.id} failed: {outcome['error']}", flush=True)
        return 1
    return 0


def _fit(trainer: TensorflowTrainer, outcome: dict) -> None:
    try:
        trainer.fit()
    except Exception as error:  # Ray Train's TrainingFailedError, or the cluster's own
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        outcome["error"] = (lines[0] + (f" {lines[-1]}" if len(lines) > 1 else ""))[:500]  # Ray's words, the cause
