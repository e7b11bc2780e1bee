"""Model cards: every figure measured from a run's saved files, written as JSON (the app) and Markdown.

A card is never typed by hand. `measure` reads the run folder (config, status, history, model) and
evaluates the model: clean accuracy on the whole test set, the headline robust accuracy under
AutoAttack standard on the whole test set, robust accuracy under PGD-50 with 10 restarts on
cross-entropy and margin (`robustness.strongest`, per sample at its worst) over Linf and L2 grids,
and Attack/BTR ARA. `markdown` renders the card for
people, with the recipes tried on the way to it when there is a table of them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from advcore import models
from advcore.evaluation import robustness
from advcore.interpret import explain
from advcore.storage import data, files
from advcore.storage.runs import Run
from advcore.training import config as config_module
from advcore.training import trainer

CARD_JSON, CARD_MARKDOWN = "card.json", "card.md"


@dataclasses.dataclass(frozen=True)
class CardSettings:
    linf: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2)
    l2: tuple[float, ...] = (0.5, 1.0, 1.5)
    count: int = 1000  # test images for each robust accuracy (the first ones)
    headline_count: int = 10_000  # test images for the headline figure
    headline: tuple[str, float] = ("linf", 0.1)
    ara_count: int = 1000  # a seeded sample, as on the Compare page
    batch_size: int = 500
    seed: int = 0


def describe(content: dict) -> str:
    """The training recipe of a config, in one sentence."""
    config = config_module.TrainConfig.from_dict(content)
    model = f"{config.model.architecture}" + (f" (width x{config.model.width})" if config.model.width > 1 else "")
    optimizer = config.optimizer
    rate = f"{optimizer.name}, learning rate {optimizer.learning_rate:g}" + (
        f" (one cycle, peak at {config.lr_schedule.peak:.0%})" if config.lr_schedule.kind == "cyclic" else
        f" (x{config.lr_schedule.factor:g} at epochs {config.lr_schedule.milestones})"
        if config.lr_schedule.kind == "step" else "")
    data_part = f"batch {config.batch_size}, augmentation {config.data.augment}, seed {config.seed}"
    schedule = config.schedule
    if not config.adversarial:
        return f"{model}, standard training: {schedule.epochs} epochs, {rate}, {data_part}"
    attack = config.attack
    if attack.method == "gan":
        attack_part = "samples of the GAN for the batch's classes"
    elif attack.method == "unrestricted":
        attack_part = f"unrestricted examples ({attack.steps or 20} latent steps, pixel noise up to {attack.eps:g})"
    else:
        method = {"fgsm": "FGSM", "fgsm_rs": "FGSM with random start", "ll_fgsm": "least-likely-class FGSM",
                  "pgd": f"PGD-{attack.steps or 7}"}[attack.method]
        step = trainer.pixel_attack(attack).effective_step_size
        attack_part = f"{method}, {attack.norm.capitalize()} eps {attack.eps:g}, step {step:.3g}"
    if attack.warmup_epochs:
        attack_part += f", eps ramped up over {attack.warmup_epochs:g} epochs"
    objective = config.objective
    if objective.kind != "ce":  # TRADES runs its PGD on the KL term; MART on cross-entropy
        attack_part = f"{objective.kind.upper()} (beta {objective.beta:g}) with {attack_part}"
    if config.awp.enabled:
        attack_part += f", adversarial weight perturbation (gamma {config.awp.gamma:g})"
    if schedule.kind == "interleaved":
        epochs = (f"{schedule.cycles} cycles of {schedule.vanilla_epochs} vanilla then "
                  f"{schedule.adversarial_epochs} adversarial epochs")
    elif schedule.kind == "warmup":
        epochs = f"{schedule.vanilla_epochs} vanilla epochs, then adversarial up to epoch {schedule.epochs}"
    else:
        epochs = f"{schedule.epochs} epochs"
    mode = {"adversarial": "on adversarial batches", "double": f"on clean + adversarial batches "
            f"(adversarial weight {config.mix.weight:g})", "split": f"with {config.mix.fraction:.0%} of each "
            "batch adversarial"}[config.mode]
    kept = ", the epoch of best validation robust accuracy kept" if config.validation.keep_best else ""
    return f"{model}, adversarial training {mode}: {attack_part}; {epochs}{kept}, {rate}, {data_part}"


def training(run: Run) -> dict:
    """Epochs and wall time of the run, and where it ran."""
    status, history = run.recorded_status(), run.history()
    started, ended = (pd.Timestamp(status[key]) for key in ("started", "ended"))
    return {"epochs": int(len(history)), "wall_seconds": (ended - started).total_seconds(),
            "device": status.get("device"), "host": status.get("host")}


def _machine() -> dict:
    import tensorflow as tf

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "tensorflow": tf.__version__}


def per_epoch(history: pd.DataFrame) -> list[dict]:
    """Clean and PGD validation accuracy of every epoch (the catastrophic-overfitting check)."""
    columns = [c for c in ("epoch", "phase", "val_accuracy", "val_robust_accuracy", "loss", "seconds")
               if c in history]
    return history[columns].replace({np.nan: None}).to_dict(orient="records")


def overfitting(rows: list[dict], adversarial: bool) -> str | None:
    """Why the history shows catastrophic overfitting (robust accuracy collapsing after adversarial
    epochs lifted it), or None. Standard training has no robustness to lose."""
    robust = [(row["epoch"], row["val_robust_accuracy"]) for row in rows
              if row.get("phase") == config_module.ADVERSARIAL and row.get("val_robust_accuracy") is not None]
    if not adversarial or not robust:
        return None
    best_epoch, best = max(robust, key=lambda pair: pair[1])
    last_epoch, last = robust[-1]
    if best > 0.2 and last < 0.5 * best:
        return (f"robust accuracy fell from {best:.1%} (epoch {best_epoch}) to {last:.1%} "
                f"(epoch {last_epoch}) in adversarial epochs")
    return None


def robustness_rows(model, dataset: data.Dataset, settings: CardSettings,
                    report: Callable[[str], None] = print) -> list[dict]:
    """Robust accuracy under the strongest evaluation at every eps of both grids, and the headline
    budget again on `headline_count` images.

    Each budget is attacked once, on the most images any of its rows needs; a row on fewer images
    reads the first ones (random starts depend on each image's index, so that equals attacking them
    alone).
    """
    grid = [(norm, eps) for norm in ("linf", "l2") for eps in getattr(settings, norm)]
    rows = []
    for norm, eps in grid + ([] if settings.headline in grid else [settings.headline]):
        counts = sorted(({settings.count} if (norm, eps) in grid else set())
                        | ({settings.headline_count} if (norm, eps) == settings.headline else set()))
        x, y = dataset.test.x[:counts[-1]], dataset.test.y[:counts[-1]]
        outcome = robustness.worst_case_accuracy(model, x, y, robustness.strongest(eps, norm=norm),
                                                 batch_size=settings.batch_size, seed=settings.seed)
        for count in counts:
            robust = float(outcome.robust[:count].mean())
            ce_only, margin_only = (float(o.robust[:count].mean()) for o in outcome.outcomes)
            rows.append({"norm": norm, "eps": eps, "count": count, "robust_accuracy": robust, "ce_only": ce_only,
                         "margin_only": margin_only, "standard_error": math.sqrt(robust * (1 - robust) / count),
                         "seconds": round(outcome.seconds, 1) if count == counts[-1] else None})
            report(f"{norm} eps {eps:g} on {count} images: {robust:.2%}")
    return rows


def autoattack_headline(model, dataset: data.Dataset, settings: CardSettings,
                        report: Callable[[str], None] = print) -> dict:
    """AutoAttack standard at the headline budget on the whole test set, with what each component broke."""
    norm, eps = settings.headline
    result = robustness.autoattack_curve(model, dataset.test.x, dataset.test.y, [eps], norm=norm, version="standard",
                                         batch_size=settings.batch_size, seed=settings.seed).iloc[0]
    robust, count = float(result["robust_accuracy"]), len(dataset.test)
    report(f"AutoAttack standard, {norm} eps {eps:g}, {count} images: {robust:.2%}")
    return {"version": "standard", "norm": norm, "eps": eps, "count": count, "robust_accuracy": robust,
            "standard_error": math.sqrt(robust * (1 - robust) / count), "seconds": round(float(result["seconds"]), 1),
            "accuracy_after": {"clean": float(result["clean_accuracy"]), **robustness.accuracy_after(result.to_dict())}}


def headline_metrics(card: dict) -> dict:
    """The card's figures in one line each: clean accuracy, AutoAttack (where measured), then PGD."""
    norm, eps = card["headline"]["norm"], card["headline"]["eps"]
    budget = f"{norm.capitalize()} eps {eps:g}"
    metrics = {f"clean accuracy ({card['clean_accuracy']['count']:,} test images)": card["clean_accuracy"]["value"]}
    if "autoattack" in card:
        auto = card["autoattack"]
        metrics[f"robust accuracy, {budget}, AutoAttack standard ({auto['count']:,} test images)"] = \
            auto["robust_accuracy"]
    pgd = next(row for row in card["robustness"]["rows"] if (row["norm"], row["eps"], row["count"]) == (
        norm, eps, card["headline"]["count"]))
    metrics[f"robust accuracy, {budget}, PGD-50 x 10 restarts, CE + margin ({pgd['count']:,} test images)"] = \
        pgd["robust_accuracy"]
    return metrics


def with_autoattack(card: dict, run_dir: str | Path, settings: CardSettings, report: Callable[[str], None] = print
                    ) -> dict:
    """The card with its AutoAttack headline measured now (the other figures as they were)."""
    run = Run(Path(run_dir).parent, Path(run_dir).name)
    config = config_module.TrainConfig.from_dict(run.config())
    dataset = data.load(config.data.dataset, data_dir=config.data.data_dir)
    norm, eps = settings.headline
    card = card | {"headline": {"norm": norm, "eps": eps, "count": settings.headline_count},
                   "autoattack": autoattack_headline(models.load(run.model_path), dataset, settings, report)}
    return card | {"metrics": headline_metrics(card)}


def measure(run_dir: str | Path, *, name: str | None = None, settings: CardSettings = CardSettings(),
            reproduce: list[str] = (), tried: pd.DataFrame | None = None,
            report: Callable[[str], None] = print) -> dict:
    """The card of the run in `run_dir` (its final model.keras), every figure measured now."""
    run_dir = Path(run_dir)
    run = Run(run_dir.parent, run_dir.name)
    content = run.config()
    config = config_module.TrainConfig.from_dict(content)
    dataset = data.load(config.data.dataset, data_dir=config.data.data_dir)
    model = models.load(run.model_path)
    history = run.history()
    epochs = per_epoch(history)
    clean = robustness.accuracy(model, dataset.test.x, dataset.test.y, settings.batch_size)
    report(f"clean accuracy {clean:.2%}")
    strongest = autoattack_headline(model, dataset, settings, report)
    rows = robustness_rows(model, dataset, settings, report)
    norm, eps = settings.headline
    flags, figures = robustness.sanity_checks(model, dataset.test.x[:settings.count], dataset.test.y[:settings.count],
                                              eps=0.1, batch_size=settings.batch_size, seed=settings.seed)
    indices = explain.sample_indices(settings.ara_count, len(dataset.test))
    ara = explain.ara(model, dataset.test.x[indices], dataset.test.y[indices], indices=indices)
    report(f"ARA attack {ara.attack_ara:.4f}, BTR {ara.btr_ara:.4f}")
    card = {
        "name": name or run.name(),
        "dataset": dataset.name, "input_shape": list(dataset.input_shape), "class_names": list(dataset.class_names),
        "architecture": config.model.architecture, "width": config.model.width,
        "parameters": int(model.count_params()),
        "file": {"name": run.model_path.name, "bytes": run.model_path.stat().st_size,
                 "sha256": files.digest(run.model_path)},
        "trained": describe(content),
        "headline": {"norm": norm, "eps": eps, "count": settings.headline_count},
        "clean_accuracy": {"value": clean, "count": len(dataset.test)},
        "autoattack": strongest,
        "robustness": {"attack": "PGD-50 with 10 random restarts, on cross-entropy and on the logit margin, "
                                 "each sample counted at its worst (advcore.evaluation.robustness.strongest)",
                       "images": f"the first {settings.count:,} test images" + (
                           f" (the headline row: the first {settings.headline_count:,})"
                           if settings.headline_count != settings.count else ""),
                       "rows": rows},
        "ara": ara.summary() | {"count": settings.ara_count},
        "sanity": {"count": settings.count, "eps": 0.1, "fgsm_accuracy": figures["single_step_accuracy"],
                   "pgd20_accuracy": figures["pgd_accuracy"], "unbounded_accuracy": figures["unbounded_accuracy"],
                   "zero_gradient_fraction": figures["zero_gradient_fraction"],
                   "flags": [flag.message for flag in flags]},
        "training": training(run), "measured_on": _machine(),
        "per_epoch": epochs, "catastrophic_overfitting": overfitting(epochs, config.adversarial),
        "config": content,
        "reproduce": list(reproduce),
        "tried": [] if tried is None else tried.replace({np.nan: None}).to_dict(orient="records"),
    }
    return card | {"metrics": headline_metrics(card)}


def _percent(value) -> str:
    return "" if value is None else f"{value:.1%}"


def _breakdown(accuracy_after: dict) -> str:
    """"clean 88.5%, after APGD-CE 77.3%, ..." from a result's accuracy after each component."""
    return ", ".join(f"{name} {value:.1%}" if name == "clean" else f"after {name} {value:.1%}"
                     for name, value in accuracy_after.items())


def _table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n| " + " | ".join("---" for _ in frame.columns) + " |\n"
    return header + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in frame.itertuples(index=False))


def markdown(card: dict) -> str:
    """The card for people: what the model is, how it was made, what it scores, how to redo it."""
    training = card["training"]
    robust = pd.DataFrame(card["robustness"]["rows"])
    percents = {c: robust[c].map(_percent) for c in ("robust_accuracy", "ce_only", "margin_only")}
    robust = robust.astype(object).fillna("").assign(eps=robust["eps"].map("{:g}".format), **percents,
                                      standard_error=robust["standard_error"].map(lambda v: f"±{v:.1%}"))
    epochs = pd.DataFrame(card["per_epoch"])
    epochs = epochs[[c for c in ("epoch", "phase", "loss", "val_accuracy", "val_robust_accuracy") if c in epochs]]
    if "loss" in epochs:
        epochs["loss"] = epochs["loss"].map("{:.3f}".format)
    for column in ("val_accuracy", "val_robust_accuracy"):
        if column in epochs:
            epochs[column] = epochs[column].map(_percent)
    machine = card["measured_on"]
    lines = [
        f"# Model card: {card['name']}", "",
        f"- **Data**: {card['dataset']}, input {tuple(card['input_shape'])}, {len(card['class_names'])} classes "
        f"({', '.join(card['class_names'])})",
        f"- **Architecture**: {card['architecture']} (width x{card['width']}), {card['parameters']:,} parameters; "
        f"`{card['file']['name']}` is {card['file']['bytes'] / 1e6:.2f} MB, sha256 `{card['file']['sha256']}`",
        f"- **Training**: {card['trained']}",
        f"- **Wall time**: {training['wall_seconds'] / 60:.1f} min for {training['epochs']} epochs on "
        f"{training['device']} ({machine['cpu_count']} CPU cores, {machine['platform']}, "
        f"TensorFlow {machine['tensorflow']})", "",
        "## Figures", "",
        *(f"- **{name}**: {value:.2%}" for name, value in card["metrics"].items()),
        *([f"- **AutoAttack, component by component** ({card['autoattack']['seconds'] / 60:.1f} min): "
           + _breakdown(card["autoattack"]["accuracy_after"])] if "autoattack" in card else []),
        f"- **ARA** (Woods et al., {card['ara']['count']:,} seeded test images): Attack "
        f"{card['ara']['attack_ara']:.4f}, BTR {card['ara']['btr_ara']:.4f}",
        f"- **Catastrophic overfitting**: {card['catastrophic_overfitting'] or 'none seen (per-epoch table below)'}",
        f"- **Gradient-masking checks** (first {card['sanity']['count']:,} test images, Linf "
        f"{card['sanity']['eps']:g}): FGSM {card['sanity']['fgsm_accuracy']:.1%}, PGD-20 "
        f"{card['sanity']['pgd20_accuracy']:.1%}, PGD with an unbounded budget "
        f"{card['sanity']['unbounded_accuracy']:.1%}; flags: {'; '.join(card['sanity']['flags']) or 'none'}",
        "", f"Robust accuracy under {card['robustness']['attack']}; {card['robustness']['images']}. "
        "`ce_only` and `margin_only` are each loss alone.", "", _table(robust),
        "## Per-epoch validation accuracy", "",
        "Training loss (on the epoch's training batches: adversarial ones in adversarial epochs), clean "
        f"accuracy on {_validation_words(card)}, and accuracy under PGD-10 at the training eps on "
        f"{card['config'].get('validation', {}).get('robust_size', config_module.ValidationConfig.robust_size):,} "
        "of them; a collapse of the last one would be catastrophic overfitting.", "",
        _table(epochs),
    ]
    if card["tried"]:
        lines += ["## Recipes tried", "", _table(pd.DataFrame(card["tried"]).fillna("")), ""]
    lines += ["## Reproduce", "", "```", *card["reproduce"], "```", ""]
    return "\n".join(lines)


def _validation_words(card: dict) -> str:
    """Where the run's validation images came from: the test split in runs older than held-out
    validation (their config says val_size), else the training split."""
    data_config = card["config"].get("data", {})
    if "val_size" in data_config:
        return f"{data_config['val_size']:,} validation images taken from the test split (an older run)"
    size = data_config.get("validation_size")
    if size is None:
        count = (f"{data.BUILT_IN_VALIDATION:,}" if card["dataset"] in data.DATASETS
                 else f"{data.FOLDER_VALIDATION_SHARE:.0%} of the")
    else:
        count = f"{size:,}"
    return f"{count} validation images held out of the training split (never trained on)"


def write(folder: str | Path, card: dict) -> None:
    folder = Path(folder)
    files.write_json(folder / CARD_JSON, card)
    files.write_text(folder / CARD_MARKDOWN, markdown(card))
