"""Run summaries for the pages: the runs table and the live view of one run. Reads files only."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from advcore.storage.runs import LIVE_STATUSES, Run, RunError
from advcore.training.config import config_kind


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


def run_row(run: Run) -> dict:
    """One line of the runs table; a damaged run shows as such, with the reason."""
    row = {"id": run.id, "name": run.name(), "status": "damaged", "epoch": None, "summary": "",
           "last val acc": None, "best val acc": None, "best robust acc": None, "problem": ""}
    try:
        status, config, history = run.status(), run.training_config(), run.history()
    except RunError as error:
        row["problem"] = str(error)
        return row
    row.update(status=status["status"], epoch=len(history), summary=_config_summary(config),
               problem=status.get("error") or "")
    if len(history) and "val_accuracy" in history:
        row["last val acc"] = history["val_accuracy"].iloc[-1]
        row["best val acc"] = _best(history, "val_accuracy")
        row["best robust acc"] = _best(history, "val_robust_accuracy")
    return row


def runs_table(runs: list[Run]) -> pd.DataFrame:
    return pd.DataFrame([run_row(run) for run in runs],
                        columns=["id", "name", "status", "epoch", "summary", "last val acc", "best val acc",
                                 "best robust acc", "problem"])


def is_live(run: Run) -> bool:
    try:
        return run.status()["status"] in LIVE_STATUSES
    except RunError:
        return False


def progress(run: Run, status: dict, history: pd.DataFrame) -> dict:
    """Epoch and phase in progress, the share of it done, elapsed time and ETA (None if unknown)."""
    position = run.progress() if status["status"] in LIVE_STATUSES else {}
    steps = position.get("steps_per_epoch") or status.get("steps_per_epoch")
    within = min(1.0, position.get("batch", 0) / steps) if steps else 0.0
    epoch = position.get("epoch", len(history))
    epoch_seconds = history["seconds"].tail(5).mean() if len(history) else None
    total = status.get("total_epochs")
    eta = None
    if total and epoch_seconds and status["status"] in LIVE_STATUSES:
        eta = max(0.0, (total - len(history) - within) * epoch_seconds)
    elapsed = None
    if status.get("started"):
        end = status.get("ended") if status["status"] not in LIVE_STATUSES else None
        finish = dt.datetime.fromisoformat(end) if end else dt.datetime.now(dt.timezone.utc)
        elapsed = (finish - dt.datetime.fromisoformat(status["started"])).total_seconds()
    return {"epoch": epoch, "within": within, "total": total, "elapsed": elapsed, "eta": eta}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
