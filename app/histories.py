"""Training histories for the History page: from runs or uploaded CSVs, merged and summarised.

Two CSV formats are read: AdvLab's `history.csv` and the original notebook's
(`loss, base_loss, val_loss, val_base_loss, TrainType`, pandas index as first column).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from advcore.storage.runs import Run, RunError
from advcore.training.config import config_kind

SEED_COLUMNS = ("loss", "base_loss", "val_loss", "val_base_loss", "TrainType")
PHASES = {"vanilla": "vanilla", "adversarial": "adversarial"}
OPTIONAL_COLUMNS = ("val_robust_accuracy", "val_gan_accuracy", "val_unrestricted_accuracy", "kl", "consistency",
                    "lipschitz_penalty", "psi")  # empty when unchecked or off


class HistoryFormatError(ValueError):
    """An uploaded history that cannot be read, with the reason."""


MAX_CSV_MEGABYTES = 10  # a 100,000-epoch history is about 10 MB


def read_csv(content: bytes, name: str) -> pd.DataFrame:
    """An uploaded history in either format, as AdvLab columns (epoch from 1, phase, metrics)."""
    try:
        frame = pd.read_csv(io.BytesIO(content))
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise HistoryFormatError(f"{name}: not a readable CSV file ({str(error).splitlines()[0]})") from None
    if frame.empty:
        raise HistoryFormatError(f"{name}: the file has no rows")
    if set(SEED_COLUMNS) <= set(frame.columns):
        epoch_column = frame.columns[0] if frame.columns[0] not in SEED_COLUMNS else None
        epochs = frame[epoch_column] if epoch_column else pd.Series(range(len(frame)))
        phases = frame["TrainType"].astype(str).str.strip().str.lower()
        frame = frame.drop(columns=[c for c in (epoch_column, "TrainType") if c])
        frame.insert(0, "phase", phases)
        frame.insert(0, "epoch", pd.to_numeric(epochs, errors="coerce") + 1)
    elif not {"epoch", "phase"} <= set(frame.columns):
        raise HistoryFormatError(
            f"{name}: unknown history format; expected AdvLab's columns (epoch, phase, loss, ...) or the "
            f"notebook's ({', '.join(SEED_COLUMNS)})")
    unknown = sorted(set(frame["phase"]) - set(PHASES))
    if unknown:
        raise HistoryFormatError(f"{name}: unknown epoch types {unknown}; expected Vanilla or Adversarial")
    metrics = [c for c in frame.columns if c not in ("epoch", "phase", "warning")]
    for column in ["epoch", *metrics]:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().all() and column not in OPTIONAL_COLUMNS:
            raise HistoryFormatError(f"{name}: column {column!r} holds no numbers")
        frame[column] = values
    if frame["epoch"].isna().any():
        raise HistoryFormatError(f"{name}: some rows have no epoch number")
    return frame


def classifier_runs(runs: list[Run]) -> list[Run]:
    """The runs that train classifiers (a GAN run's history has other columns: the Train page shows it)."""
    kept = []
    for run in runs:
        try:
            if config_kind(run.training_config()) == "classifier":
                kept.append(run)
        except RunError:
            kept.append(run)  # listed, so that the page says why it cannot be read
    return kept


def run_label(run: Run) -> str:
    return f"{run.name()} ({run.id[-4:]})"


def from_runs(runs: dict[str, Run]) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Histories of runs by display label, and the reason for each run that could not be read."""
    histories, problems = {}, {}
    for label, run in runs.items():
        try:
            history = run.history()
        except RunError as error:
            problems[label] = str(error)
            continue
        if len(history):
            histories[label] = history
    return histories, problems


def with_time(history: pd.DataFrame) -> pd.DataFrame:
    """Adds minutes since the start at each epoch's end (`time_end`) and start (`time_start`)."""
    seconds = history["seconds"].fillna(0) if "seconds" in history else pd.Series(np.zeros(len(history)))
    end = seconds.cumsum().to_numpy() / 60
    return history.assign(time_end=end, time_start=end - seconds.to_numpy() / 60)


def merged(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    if not histories:
        return pd.DataFrame()
    return pd.concat([h.assign(run=label) for label, h in histories.items()], ignore_index=True)


def summary(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []
    for label, history in histories.items():
        row = {"run": label, "epochs": len(history),
               "vanilla epochs": int((history["phase"] == "vanilla").sum()),
               "adversarial epochs": int((history["phase"] == "adversarial").sum())}
        for metric in ("val_accuracy", "val_robust_accuracy"):
            values = history[metric] if metric in history else pd.Series(dtype=float)
            row[f"final {metric}"] = values.iloc[-1] if values.notna().any() else np.nan
            row[f"best {metric}"] = values.max() if values.notna().any() else np.nan
        row["minutes"] = history["seconds"].sum() / 60 if "seconds" in history else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def summary_view(table: pd.DataFrame):
    """The summary as shown: accuracies in percent, minutes to one decimal, and a dash where a run has
    no such figure (not "None")."""
    percent = [column for column in table if "accuracy" in column]
    return table.style.format({column: "{:.1%}" for column in percent} | {"minutes": "{:.1f}"}, na_rep="–")
