"""Where a resumed run goes on, and whether it may: read from the run's files alone (no TensorFlow), so
the pages check a resume before they queue it and the training process checks it again."""

from __future__ import annotations

import pandas as pd

from advcore.storage import files
from advcore.storage.runs import Run, RunError, RunRefused


def resumable_from(run: Run, total_epochs: int | None) -> tuple[int, pd.DataFrame | None]:
    """The last epoch with both a checkpoint and a history row (a kill can fall between the two writes)
    and the history up to it (None when the run starts from scratch).

    Resuming never loses work: a run that trained but has no such epoch raises RunRefused, and so does a
    finished run given no more epochs."""
    try:
        status, recorded = run.recorded_status(), run.history()
    except RunError as error:
        raise RunRefused(f"{error}; the run cannot be resumed from it") from None
    epochs = pd.to_numeric(recorded["epoch"], errors="coerce") if "epoch" in recorded else pd.Series(dtype=float)
    complete = [epoch for epoch in run.checkpoints() if epoch in set(epochs)]
    if not complete:
        lost = _work_without_checkpoint(run, recorded)
        if lost:
            raise RunRefused(f"run {run.id} cannot be resumed: {lost}, so it would train again from scratch "
                             f"over its files; train a new run with its config instead (--config {run.config_path})")
        first_epoch, history = 0, None
    else:
        first_epoch, history = complete[-1], recorded[epochs <= complete[-1]]
    if total_epochs is not None and first_epoch > total_epochs:
        raise RunRefused(f"run {run.id} has trained {first_epoch} epochs, more than the {total_epochs} asked")
    if status["status"] == "finished" and total_epochs is not None and first_epoch >= total_epochs:
        raise RunRefused(f"run {run.id} finished all its {first_epoch} epochs: to train it further, resume it with "
                         f"more epochs (--epochs {first_epoch + 10}, or --cycles for an interleaved schedule)")
    return first_epoch, history


def resume_point(run: Run, config, total_epochs: int | None, empty: pd.DataFrame) -> tuple[int, pd.DataFrame]:
    """`resumable_from`, for the process that trains on: the config it goes on with (longer, when a
    finished run is extended) becomes the run's config.json."""
    first_epoch, history = resumable_from(run, total_epochs)
    if config.to_dict() != run.config():
        files.write_json(run.config_path, config.to_dict())
    return first_epoch, empty if history is None else history


def _work_without_checkpoint(run: Run, history: pd.DataFrame) -> str:
    """What a run holds that a resume from scratch would overwrite, in words; "" when it holds nothing."""
    checkpoints = run.checkpoints()
    if checkpoints:
        return f"its checkpoints (epochs {', '.join(map(str, checkpoints))}) have no matching rows in history.csv"
    if len(history):
        return f"history.csv has {len(history)} epochs but checkpoints/ holds no complete checkpoint"
    if any(run.path.glob("*.keras")):  # (a missing history.csv beside a model is damage: Run.history says so)
        return "it has a model but no epoch in history.csv and no checkpoint"
    return ""
