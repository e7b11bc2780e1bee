"""The augmentation study of seed 001, reproducible: one classifier recipe trained four ways.

    none          clean batches only
    fgsm          a share of each batch replaced by least-likely-class FGSM examples, eps drawn per
                  batch from [1e-4, eps], weighted lambda (the seed: half, lambda 0.3)
    gan           the share replaced by GAN samples of the same classes, weighted lambda
    unrestricted  the share replaced by unrestricted examples against the current weights

Each arm is an ordinary run of the run store (same seed, data, model and epochs), with the per-epoch
GAN checks on; a study is a small record naming its four runs. Its table reads the runs' last epochs:
clean accuracy, PGD robust accuracy, accuracy on GAN samples and on fresh unrestricted examples.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pandas as pd

from advcore.storage import files
from advcore.storage.runs import Run, RunError, check_run_id, now, runs_root
from advcore.training.config import TrainConfig

ARMS = ("none", "fgsm", "gan", "unrestricted")
STUDIES_DIR = "_studies"  # under the runs root; a leading "_" keeps it out of the list of runs
TABLE_COLUMNS = ("arm", "run", "status", "epochs", "clean accuracy", "robust accuracy", "GAN-sample accuracy",
                 "unrestricted accuracy")
_LAST_EPOCH = {"clean accuracy": "val_accuracy", "robust accuracy": "val_robust_accuracy",
               "GAN-sample accuracy": "val_gan_accuracy", "unrestricted accuracy": "val_unrestricted_accuracy"}


def arm_configs(base: TrainConfig, generator: str) -> dict[str, TrainConfig]:
    """The four arms of `base`: its data, model, optimizer, epochs, seed and checks; its mix (lambda,
    fraction) for every augmented arm; its attack eps as the FGSM arm's largest eps and its attack
    steps (default 20) as the unrestricted arm's latent steps. Validated."""
    content = base.to_dict() | {"generator": str(generator), "mode": "vanilla"}
    content["schedule"] = content["schedule"] | {"kind": "constant"}
    if content["validation"]["eps"] is None:  # every arm's PGD check at the same budget
        content["validation"]["eps"] = base.attack.eps
    attacks = {"none": None,
               "fgsm": {"method": "ll_fgsm", "eps": base.attack.eps, "eps_min": min(1e-4, base.attack.eps)},
               "gan": {"method": "gan"},
               "unrestricted": {"method": "unrestricted", "steps": base.attack.steps or 20}}
    arms = {}
    for arm, attack in attacks.items():
        arm_content = copy.deepcopy(content) | {"name": f"{base.name} [{arm}]"}
        if attack is not None:
            arm_content |= {"mode": "split", "attack": {"norm": "linf", **attack}}
        arms[arm] = TrainConfig.from_dict(arm_content)
    return arms


def studies_root(root: str | os.PathLike | None = None) -> Path:
    return runs_root(root) / STUDIES_DIR


def create(base: TrainConfig, generator: str, root: str | os.PathLike | None = None,
           owner_pid: int | None = None) -> dict:
    """Records the four arms as queued runs and the study naming them. With `owner_pid` the runs
    belong to that process (the CLI trains them itself), so the app's queue leaves them alone."""
    arms = arm_configs(base, generator)
    runs = {arm: Run.create(config.to_dict(), root, config.name, owner_pid) for arm, config in arms.items()}
    record = {"id": f"study-{runs['none'].id}", "name": base.name, "created": now(), "generator": str(generator),
              "base": base.to_dict(), "runs": {arm: run.id for arm, run in runs.items()}}
    files.write_json(studies_root(root) / f"{record['id']}.json", record)
    return record


def read(study_id: str, root: str | os.PathLike | None = None) -> dict:
    check_run_id(study_id)
    try:
        return files.read_json(studies_root(root) / f"{study_id}.json", "study")
    except files.FileProblem as error:
        raise RunError(f"no study {study_id!r} in {studies_root(root)} ({error})") from None


def list_studies(root: str | os.PathLike | None = None) -> list[dict]:
    """Every study record, newest first; damaged records are skipped."""
    folder = studies_root(root)
    records = []
    for path in sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []:
        try:
            records.append(files.read_json(path, "study"))
        except files.FileProblem:
            continue
    return records


def table(record: dict, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per arm from its run's files: status, epochs and the last epoch's accuracies."""
    rows = []
    for arm in ARMS:
        run_id = record.get("runs", {}).get(arm)
        row = dict.fromkeys(TABLE_COLUMNS) | {"arm": arm, "run": run_id}
        try:
            run = Run.open(check_run_id(run_id), root)
            history = run.history()
            row |= {"status": run.status()["status"], "epochs": len(history)}
        except RunError:
            row["status"] = "missing"
            rows.append(row)
            continue
        for column, source in _LAST_EPOCH.items():
            if source in history and len(history) and pd.notna(history[source].iloc[-1]):
                row[column] = float(history[source].iloc[-1])
        rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)
