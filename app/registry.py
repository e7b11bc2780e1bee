"""Every model the pages can use: bundled ones, the models of runs, and a user's uploaded files.

Each entry has a card (dataset, input shape, class names, how it was trained, measured metrics). An
uploaded file is kept in the app's own uploads folder only if it passes the archive checks and loads
as a logits classifier in a sandboxed child process (`storage.model_files`), then with `safe_mode=True`
here; anything else is deleted again and refused with the reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path

from advcore.storage import data, files, model_files
from advcore.storage.runs import Run, RunError, list_runs, runs_root

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DIR = PROJECT_ROOT / "assets" / "models"  # each model's folder is also its (read-only) example run
BUNDLED_ORDER = ("standard", "pgd-linf", "fast-linf", "pgd-l2", "interleaved")  # the pages' defaults come first
UPLOADS_ENV = "ADVLAB_UPLOADS_DIR"
MAX_MODEL_BYTES = 50 * 2**20
_INPUT_SHAPES = {"fashion_mnist": (28, 28, 1), "mnist": (28, 28, 1), "cifar10": (32, 32, 3),
                 "cifar100": (32, 32, 3)}
_USABLE_RUN_STATUSES = ("finished", "stopped")


class RegistryError(ValueError):
    """A model that cannot be offered, with the reason."""


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    key: str  # unique and stable: "bundled:<name>", "run:<run id>", "upload:<hash>"
    label: str
    source: str  # bundled | run | upload
    path: Path
    card: dict

    @property
    def class_names(self) -> list[str]:
        return list(self.card["class_names"])

    @property
    def run_id(self) -> str | None:
        return self.key.removeprefix("run:") if self.source == "run" else None


def uploads_dir() -> Path:
    return Path(os.environ.get(UPLOADS_ENV, PROJECT_ROOT / "uploads")).expanduser()


def _read_card(path: Path) -> dict | None:
    """A model card, or None when it is damaged (a model nobody can describe is not offered)."""
    try:
        return files.read_json(path, "model card")
    except files.FileProblem:
        return None


def _bundled_rank(name: str) -> tuple:
    return (BUNDLED_ORDER.index(name) if name in BUNDLED_ORDER else len(BUNDLED_ORDER), name)


def card_caption(entry: ModelEntry) -> str:
    """One line: the dataset, how the model was trained, its headline figures."""
    card = entry.card
    metrics = "; ".join(f"{name}: {value:.1%}" for name, value in card.get("metrics", {}).items())
    return " · ".join(filter(None, [f"dataset: {card.get('dataset') or 'unknown'}", card.get("trained"), metrics,
                                    card.get("warning")]))


def card_markdown(entry: ModelEntry) -> str | None:
    """A bundled model's card for people (card.md beside its model), or None."""
    path = entry.path.parent / "card.md"
    return path.read_text() if entry.source == "bundled" and path.is_file() else None


def example_runs() -> list[Run]:
    """The runs that trained the bundled models, in the pages' order: read-only examples for History."""
    runs = [Run(BUNDLED_DIR, path.parent.name) for path in BUNDLED_DIR.glob("*/status.json")]
    return sorted(runs, key=lambda run: _bundled_rank(run.id))


def _bundled() -> list[ModelEntry]:
    entries = []
    for card_path in sorted(BUNDLED_DIR.glob("*/card.json"), key=lambda path: _bundled_rank(path.parent.name)):
        card = _read_card(card_path)
        if card:
            entries.append(ModelEntry(f"bundled:{card_path.parent.name}", f"{card_path.parent.name} (bundled)",
                                      "bundled", card_path.parent / "model.keras", card))
    return entries


def _run_card(run: Run, status: dict) -> dict:
    """A run's card; its classes and input shape as its training recorded them (a folder's are known
    only from its files), else those of its built-in dataset."""
    config, history = run.training_config(), run.history()
    dataset = config.get("data", {}).get("dataset", "fashion_mnist")
    attack = config.get("attack", {})
    trained = "vanilla" if config.get("mode") == "vanilla" else (
        f"{config.get('mode')} training, {attack.get('method')} {attack.get('norm')} eps {attack.get('eps')}")
    metrics = {}
    for column in ("val_accuracy", "val_robust_accuracy"):
        if column in history and history[column].notna().any():
            metrics[f"last {column}"] = float(history[column].iloc[-1])
    shape = status.get("input_shape") or _INPUT_SHAPES.get(dataset)
    return {"dataset": dataset, "class_names": list(status.get("class_names") or data.CLASS_NAMES.get(dataset, ())),
            **({"input_shape": list(shape)} if shape else {}),
            "architecture": config.get("model", {}).get("architecture"), "trained": trained,
            "epochs": len(history), "metrics": metrics}


def _runs(root: Path | None) -> list[ModelEntry]:
    entries = []
    for run in list_runs(root):
        try:
            status = run.status()
            usable = status["status"] in _USABLE_RUN_STATUSES and run.model_file() is not None
            card = _run_card(run, status) if usable else None
        except RunError:
            continue  # a damaged run is listed, with its reason, on the Train page
        if card:
            entries.append(ModelEntry(f"run:{run.id}", run_entry_label(run), "run", run.model_path, card))
    return entries


def run_entry_label(run: Run) -> str:
    return f"{run.name()} (run {run.id[-4:]})"


def _upload_entry(card_path: Path, card: dict) -> ModelEntry:
    return ModelEntry(f"upload:{card_path.stem}", f"{card.get('file name', card_path.stem)} (uploaded)", "upload",
                      card_path.with_suffix(".keras"), card)


def uploads() -> list[ModelEntry]:
    cards = {path: _read_card(path) for path in sorted(uploads_dir().glob("*.json"))}
    return [_upload_entry(path, card) for path, card in cards.items() if card]


def list_models(root: Path | None = None) -> list[ModelEntry]:
    return _bundled() + _runs(runs_root(root)) + uploads()


def save_upload(content: bytes, file_name: str, keep_softmax: bool = False) -> ModelEntry:
    """Keeps an uploaded `.keras` file if it is a usable classifier; refuses it otherwise. Its card says
    how its output ends (`warning`), and whether the pages attack a final softmax's probabilities
    (`keep_softmax`) instead of the logits under it; evaluations always attack the logits."""
    from advcore import models  # deferred: Keras is needed only to check the file

    if not file_name.lower().endswith(".keras"):
        raise RegistryError(f"{file_name}: AdvLab takes Keras 3 `.keras` files (saved with model.save('x.keras'))")
    if not content:
        raise RegistryError(f"{file_name}: the file is empty")
    if len(content) > MAX_MODEL_BYTES:
        raise RegistryError(f"{file_name}: {len(content) / 2**20:.0f} MB is over the "
                            f"{MAX_MODEL_BYTES / 2**20:.0f} MB limit")
    digest = hashlib.sha256(content).hexdigest()[:16]
    path = uploads_dir() / f"{digest}.keras"
    with files.atomic_path(path) as tmp:
        tmp.write_bytes(content)
    try:
        model_files.check_in_sandbox(path, file_name)  # a hostile file can only hurt that child process
        model = models.load(path, logits=False)
        models.as_logits(model)
    except models.ModelError as error:
        path.unlink(missing_ok=True)
        raise RegistryError(str(error).replace(str(path), file_name).replace(path.name, file_name)) from None
    shape = tuple(model.inputs[0].shape[1:])
    classes = int(model.outputs[0].shape[-1])
    dataset = next((name for name, names in data.CLASS_NAMES.items()  # a guess the pages let the user change
                    if len(names) == classes and _INPUT_SHAPES[name] == shape), None)
    card = {"file name": re.sub(r"[^\w.\- ]", "_", file_name)[:100], "dataset": dataset,
            "input_shape": list(shape), "class_names": list(data.CLASS_NAMES[dataset]) if dataset else
            [f"class {i}" for i in range(classes)], "trained": "uploaded by a user", "metrics": {},
            "output_activation": models.output_activation(model),
            "keep_softmax": keep_softmax and models.output_activation(model) == "softmax"}
    if warning := models.output_warning(model, stripped=not card["keep_softmax"]):
        card["warning"] = warning
    return _upload_entry(files.write_json(path.with_suffix(".json"), card), card)
