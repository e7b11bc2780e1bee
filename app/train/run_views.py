"""Run summaries for the pages: the runs table and the live view of one run. Reads files only."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re

import pandas as pd

from advcore import devices
from advcore.jobs import gpus
from advcore.storage.runs import LIVE_STATUSES, Run, RunError
from advcore.training.config import GanConfig, TrainConfig, config_kind
from app.text import counted


def _gan_summary(config: dict) -> str:
    epochs = config.get("epochs") or "until stopped"
    return (f"{config.get('data', {}).get('dataset')} · GAN ({config.get('architecture')}, z {config.get('z_dim')}) · "
            f"{config.get('critic_steps')} critic steps, GP {config.get('gradient_penalty')} · {epochs} epochs")


def _config_summary(config: dict) -> str:
    if config_kind(config) == "gan":
        return _gan_summary(config)
    if config.get("mode") == "vanilla":
        training = "vanilla"
    else:
        attack = config.get("attack", {})
        training = f"{config.get('mode')} {attack.get('method')} {attack.get('norm')} eps {attack.get('eps', 0):.3g}"
        objective = config.get("objective", {})
        if objective.get("kind", "ce") != "ce":
            training += f" {objective['kind'].upper()} beta {objective.get('beta', 6.0):g}"
        if config.get("awp", {}).get("enabled"):
            training += " + AWP"
    noise = config.get("noise", {})
    if noise.get("sigma"):
        training += f" + noise sigma {noise['sigma']:g}" + (
            f", {noise.get('copies')} copies, consistency {noise['consistency']:g}" if noise.get("consistency") else "")
    schedule = config.get("schedule", {})
    if schedule.get("kind") == "interleaved":
        cycles = schedule.get("cycles") or "until stopped"
        plan = f"{schedule.get('vanilla_epochs')}+{schedule.get('adversarial_epochs')} x {cycles}"
    else:
        plan = f"{schedule.get('kind')} {schedule.get('epochs') or 'until stopped'}"
    return f"{config.get('data', {}).get('dataset')} · {config.get('model', {}).get('architecture')} · {training} · {plan}"


def _best(history: pd.DataFrame, column: str) -> float | None:
    if column in history and history[column].notna().any():
        return float(history[column].max())
    return None


@dataclasses.dataclass
class Snapshot:
    """One read of a run's files: the header, the charts and the table row of a poll all draw from it,
    so they always agree. `problem` says why the run cannot be read (a damaged run)."""
    run: Run
    status: dict
    config: dict | None = None
    history: pd.DataFrame | None = None
    position: dict = dataclasses.field(default_factory=dict)
    problem: str = ""

    @property
    def live(self) -> bool:
        return self.status["status"] in LIVE_STATUSES


def snapshot(run: Run) -> Snapshot:
    try:
        status = run.status()
        content, history = run.training_config(), run.history()
    except RunError as error:
        return Snapshot(run, {"status": "damaged"}, problem=str(error))
    live = status["status"] in LIVE_STATUSES
    return Snapshot(run, status, content, history, run.progress() if live else {})


def run_row(shot: Snapshot) -> dict:
    """One line of the runs table; a damaged run shows as such, with the reason."""
    row = {"name": shot.run.name(), "status": shot.status["status"], "epoch": None, "last val acc": None,
           "best val acc": None, "best robust acc": None, "devices": "", "summary": "", "problem": shot.problem,
           "id": shot.run.id}
    if shot.problem:
        return row
    history = shot.history
    row.update(epoch=len(history), summary=_config_summary(shot.config), problem=shot.status.get("error") or "",
               devices=devices_text(shot.status, shot.config))
    if len(history) and "val_accuracy" in history:
        row["last val acc"] = history["val_accuracy"].iloc[-1]
        row["best val acc"] = _best(history, "val_accuracy")
        row["best robust acc"] = _best(history, "val_robust_accuracy")
    return row


TABLE_COLUMNS = ["name", "status", "epoch", "last val acc", "best val acc", "best robust acc", "devices", "summary",
                 "problem", "id"]  # the figures first: no scrolling to reach them
PERCENT_COLUMNS = ("last val acc", "best val acc", "best robust acc")  # fractions, shown as percentages


def devices_text(status: dict, config: dict) -> str:
    """Where a run trains: "GPU 0, 1" or "CPU" as the scheduler gave them, after its node on a Ray
    cluster; what a queued run waits for."""
    if "job" in status and "pid" not in status:  # a Ray job not yet begun
        return f"Ray: waits for {counted(status['gpus_asked'], 'GPU') if status.get('gpus_asked') else 'a CPU'}"
    where = _local_devices_text(status, config)
    return f"{status['host']}: {where}" if "job" in status and where else where


def _local_devices_text(status: dict, config: dict) -> str:
    if "gpus" in status:
        held = gpus.recorded(status)
        return f"GPU {', '.join(map(str, held))}" if held else "CPU"
    if status["status"] == "queued":
        try:
            asked = gpus.requested(config, devices.inventory())
        except (devices.DeviceError, ValueError, TypeError):
            return ""
        return f"waits for {counted(asked, 'GPU')}" if asked else "waits for the CPU"
    return ""


def runs_table(shots: list[Snapshot]) -> pd.DataFrame:
    return pd.DataFrame([run_row(shot) for shot in shots], columns=TABLE_COLUMNS)


def is_live(run: Run) -> bool:
    try:
        return run.status()["status"] in LIVE_STATUSES
    except RunError:
        return False


def progress(shot: Snapshot) -> dict:
    """Epochs done (the history's rows, as in the chart and the table), the share of the epoch in
    progress, the run's wall time and ETA (None if unknown)."""
    status, done = shot.status, len(shot.history)
    steps = shot.position.get("steps_per_epoch") or status.get("steps_per_epoch")
    current = shot.position.get("epoch") == done + 1  # progress.json is about the epoch after the history's last
    within = min(1.0, shot.position.get("batch", 0) / steps) if steps and current else 0.0
    epoch_seconds = shot.history["seconds"].tail(5).mean() if done and "seconds" in shot.history else None
    total = status.get("total_epochs") or _planned_epochs(shot.config)
    eta = None
    if total and epoch_seconds and shot.live:
        eta = max(0.0, (total - done - within) * epoch_seconds)
    return {"done": done, "within": within, "total": total, "elapsed": wall_time(status, shot.history), "eta": eta}


def _planned_epochs(content: dict) -> int | None:
    """The epochs the config asks for (None: until stopped), as the training process counts them."""
    if config_kind(content) == "gan":
        return GanConfig.from_dict(content, checked=False).epochs
    return TrainConfig.from_dict(content, checked=False).schedule.total_epochs


def wall_time(status: dict, history: pd.DataFrame) -> float | None:
    """Seconds spent training: the finished epochs' own seconds, and for a live run the time since its last
    epoch ended or it (re)started (its status's last update). A run that sat finished, stopped or dead
    before a resume or an extension counts none of that idle time; None before it started."""
    if not status.get("started"):
        return None
    trained = float(history["seconds"].sum()) if "seconds" in history else 0.0
    if status["status"] in LIVE_STATUSES and status.get("updated"):
        since = dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(status["updated"])
        trained += max(0.0, since.total_seconds())
    return trained


NOISE = re.compile(r"^[EWI]\d{4} .*\] .*(cuda|cuInit|GPU|TensorRT|cpu_feature_guard|oneDNN)|"
                   r"^WARNING: All log messages before absl::InitializeLog|^To enable the following instructions",
                   re.IGNORECASE)


def readable_log(text: str) -> str:
    """A log tail without TensorFlow's start-up chatter about absent GPUs and CPU features, which says
    nothing about why a run failed."""
    return "\n".join(line for line in text.splitlines() if not NOISE.search(line))


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test", "": "no split"}


def skipped_summary(skipped: list[tuple[str, str, str]]) -> tuple[str, str, pd.DataFrame]:
    """("5 files of the image folder skipped: training 2, test 3", the folder holding them all, a table of
    split, file (within that folder) and reason, by split) of a folder's skipped files."""
    table = pd.DataFrame(skipped, columns=["split", "file", "reason"])
    table["split"] = table["split"].map(lambda split: SPLIT_NAMES.get(split, split))
    per_split = table["split"].value_counts()
    order = [*SPLIT_NAMES.values(), *(split for split in per_split.index if split not in SPLIT_NAMES.values())]
    label = f"{counted(len(table), 'file')} of the image folder skipped: " + ", ".join(
        f"{split} {per_split[split]}" for split in order if split in per_split)
    folder = _common_folder(list(table["file"]))
    table["file"] = [os.path.relpath(file, folder) if folder else file for file in table["file"]]
    table = table.sort_values("split", key=lambda splits: splits.map(order.index), kind="stable")
    return label, folder, table.reset_index(drop=True)


def _common_folder(paths: list[str]) -> str:
    """The deepest folder holding every path ("" if they share none)."""
    try:
        common = os.path.commonpath(paths)
    except ValueError:  # none, or absolute and relative paths mixed
        return ""
    return os.path.dirname(common) if common in paths else common
