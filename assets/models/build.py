"""Trains the bundled models from their committed configs, records recipes tried, and writes their cards.

    python assets/models/build.py train NAME     # python -m advcore train --config NAME/config.json,
                                                 # then the run's files become assets/models/NAME
    python assets/models/build.py card NAME      # measures the model and writes card.json + card.md
    python assets/models/build.py autoattack NAME   # measures only the card's AutoAttack headline again
    python assets/models/build.py try NAME LABEL [train flags ...]
                                                 # trains a variant of NAME's config (kept in runs/_tried),
                                                 # measures it on its validation split (held out of the
                                                 # training split: recipes never see the test set) and
                                                 # adds a row to NAME/tried.csv
    python assets/models/build.py record NAME LABEL RUN_DIR   # the same for a run trained already
    python assets/models/build.py adopt NAME RUN_DIR          # a run trained already becomes NAME

Each bundled folder is a finished run (config.json, status.json, history.csv, train.log, model.keras),
so the History page shows it as a read-only example, plus its card. A card is measured from these
files alone (`advcore.evaluation.cards`), never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NAMES = ("standard", "fast-linf", "pgd-linf", "pgd-l2", "interleaved")
RUN_FILES = ("config.json", "status.json", "history.csv", "train.log", "model.keras")
TARGETED = ("pgd-linf",)  # the model aimed at the robustness target: its headline on the whole test set
TRY_COUNT = 1000  # validation images of a tried recipe's robust accuracy (the card measures the test set)
TRY_ATTACK = ("apgd-ce", "apgd-t")  # AutoAttack's gradient half: within ~0.5 point of the full one, 5x cheaper
TRIED_CSV = "tried.csv"  # one row per recipe tried: its label, config, time and figures
TRIED_DIR = ROOT / "runs" / "_tried"  # tried variants stay here, to adopt one without training it again


def _headline(config) -> tuple[str, float]:
    """The budget a model is judged at: Linf 0.1 (the Fashion-MNIST benchmark), L2 at the L2 model's eps."""
    if config.adversarial and config.attack.norm == "l2":
        return "l2", config.attack.eps
    return "linf", 0.1


def train_run(name: str, runs_dir: Path, flags: list[str]) -> Path:
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-m", "advcore", "train", "--config", str(HERE / name / "config.json"),
                    "--runs-dir", str(runs_dir), *flags], check=True, env=env, cwd=ROOT)
    (run_dir,) = runs_dir.iterdir()
    return run_dir


def flat(content: dict, prefix: str = "") -> dict:
    items = {}
    for key, value in content.items():
        if isinstance(value, dict):
            items |= flat(value, f"{prefix}{key}.")
        else:
            items[f"{prefix}{key}"] = value
    return items


def record(name: str, label: str, run_dir: Path) -> None:
    """Measures a trained variant at its headline budget on its own validation split and adds it to
    NAME/tried.csv (rows from before held-out validation were measured on test images: their columns
    say so)."""
    import pandas as pd

    from advcore import models
    from advcore.attacks.autoattack import autoattack
    from advcore.evaluation import cards, robustness
    from advcore.storage import files
    from advcore.storage.runs import Run
    from advcore.training.config import TrainConfig
    from advcore.training.runner import datasets

    run = Run(run_dir.parent, run_dir.name)
    config = TrainConfig.from_dict(run.config())
    _, validation = datasets(config)
    model = models.load(run.model_path)
    norm, eps = _headline(config)
    x, y = validation.x[:TRY_COUNT], validation.y[:TRY_COUNT]
    robust = autoattack(model, x, y, eps=eps, norm=norm, version=TRY_ATTACK).robust_accuracy
    epochs, status = cards.per_epoch(run.history()), run.recorded_status()
    row = {"recipe": label, "started": status["started"], "config": json.dumps(config.to_dict()),
           "epochs": len(epochs),
           "ended": status["status"] if status["status"] == "finished" else
           f"{status['status']} after epoch {len(epochs)} of {status.get('total_epochs')}",
           "minutes": round(cards.training(run)["wall_seconds"] / 60, 1),
           "validation clean accuracy": f"{robustness.accuracy(model, validation.x, validation.y):.1%}",
           f"validation APGD-CE + APGD-T {norm} {eps:g} ({TRY_COUNT} images)": f"{robust:.1%}",
           "collapse": cards.overfitting(epochs, config.adversarial) or "no"}
    path = HERE / name / TRIED_CSV
    table = pd.concat([pd.read_csv(path), pd.DataFrame([row])]) if path.exists() else pd.DataFrame([row])
    files.write_text(path, table.to_csv(index=False))
    print(row)


def tried_table(name: str):
    """NAME/tried.csv with each recipe's config shown as its changes from NAME's config as it is now."""
    import pandas as pd

    from advcore.training.config import TrainConfig

    path = HERE / name / TRIED_CSV
    if not path.exists():
        return None
    table = pd.read_csv(path).sort_values("started", kind="stable").drop(columns="started")
    current = flat(TrainConfig.from_file(HERE / name / "config.json").to_dict())

    def changes(text: str) -> str:
        variant = flat(json.loads(text))
        return ", ".join(f"{key}={value}" for key, value in variant.items()
                         if key != "name" and current.get(key) != value) or "(this model's config)"

    table.insert(1, "changes from this model's config", table.pop("config").map(changes))
    return table


def adopt(name: str, run_dir: Path) -> None:
    """The run's files become the bundled model's folder (its card is measured afterwards); the run
    keeps its config but takes the model's name."""
    from advcore.storage import files

    for file in RUN_FILES:
        shutil.copyfile(run_dir / file, HERE / name / file)
    config = files.read_json(HERE / name / "config.json", "config")
    files.write_json(HERE / name / "config.json", config | {"name": name})


def card_settings(name: str):
    from advcore.evaluation import cards
    from advcore.training.config import TrainConfig

    return cards.CardSettings(headline=_headline(TrainConfig.from_file(HERE / name / "config.json")),
                              headline_count=10_000 if name in TARGETED else 1000)


def card(name: str, autoattack_only: bool = False) -> None:
    """Measures the card of NAME again: every figure, or only its AutoAttack headline."""
    from advcore.evaluation import cards
    from advcore.storage import files

    folder = HERE / name
    reproduce = [f"python -m advcore train --config assets/models/{name}/config.json",
                 f"python assets/models/build.py train {name}   # the same, then copies the run here",
                 f"python assets/models/build.py card {name}    # every figure of this card",
                 f"python assets/models/build.py autoattack {name}   # its AutoAttack headline alone"]
    if autoattack_only:
        content = cards.with_autoattack(files.read_json(folder / cards.CARD_JSON, "card"), folder, card_settings(name))
        content["reproduce"] = reproduce
    else:
        content = cards.measure(folder, name=name, settings=card_settings(name), reproduce=reproduce,
                                tried=tried_table(name))
    cards.write(folder, content)
    print((folder / cards.CARD_MARKDOWN).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("train", "card", "autoattack"):
        commands.add_parser(command).add_argument("name", choices=NAMES)
    tried = commands.add_parser("try")
    tried.add_argument("name", choices=NAMES)
    tried.add_argument("label")
    recorded = commands.add_parser("record")
    recorded.add_argument("name", choices=NAMES)
    recorded.add_argument("label")
    recorded.add_argument("run_dir", type=Path)
    adopted = commands.add_parser("adopt")
    adopted.add_argument("name", choices=NAMES)
    adopted.add_argument("run_dir", type=Path)
    args, flags = parser.parse_known_args()
    TRIED_DIR.mkdir(parents=True, exist_ok=True)
    if flags and args.command != "try":
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    if args.command in ("card", "autoattack"):
        card(args.name, autoattack_only=args.command == "autoattack")
    elif args.command == "record":
        record(args.name, args.label, args.run_dir.resolve())
    elif args.command == "adopt":
        adopt(args.name, args.run_dir.resolve())
    elif args.command == "train":
        with tempfile.TemporaryDirectory() as scratch:
            adopt(args.name, train_run(args.name, Path(scratch), flags))
    else:
        record(args.name, args.label, train_run(args.name, Path(tempfile.mkdtemp(dir=TRIED_DIR)), flags))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
