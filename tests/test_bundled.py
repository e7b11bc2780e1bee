"""The bundled models: their files load safely, their cards describe exactly these files, and a quick
re-measurement agrees with every card within sampling error."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advcore import models
from advcore.evaluation import cards, robustness
from advcore.storage import data, files
from advcore.storage.runs import Run
from advcore.training import config, trainer
from app import registry

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "assets" / "models"
NAMES = ("standard", "pgd-linf", "fast-linf", "pgd-l2", "interleaved")
RECHECK = 300  # test images of the quick re-measurement


def card_of(name: str) -> dict:
    return json.loads((BUNDLED / name / cards.CARD_JSON).read_text())


def within_sampling_error(measured: float, claimed: float, count: int) -> bool:
    """Within four standard errors of a `count`-image estimate: more than three of the difference of two
    independent samples (the fixture's 500 images are a seeded sample, the card's its first ones)."""
    spread = math.sqrt(max(claimed * (1 - claimed), 0.01) / count)
    return abs(measured - claimed) <= 4 * spread


@pytest.mark.parametrize("name", NAMES)
def test_the_card_describes_exactly_the_bundled_files(name, fashion):
    folder, card = BUNDLED / name, card_of(name)
    model = models.load(folder / "model.keras")  # safe_mode=True, a logits classifier
    assert (folder / "model.keras").stat().st_size == card["file"]["bytes"] < 8 * 2**20  # small enough for git
    assert files.digest(folder / "model.keras") == card["file"]["sha256"]
    assert tuple(model.inputs[0].shape[1:]) == tuple(card["input_shape"]) == fashion.input_shape
    assert model.outputs[0].shape[-1] == len(card["class_names"]) == fashion.num_classes
    assert card["class_names"] == list(fashion.class_names) and card["dataset"] == "fashion_mnist"
    assert model.count_params() == card["parameters"]
    assert card["config"] == files.read_json(folder / "config.json", "config")
    assert config.TrainConfig.from_file(folder / "config.json").model.architecture == card["architecture"]
    history = pd.read_csv(folder / "history.csv")
    assert [row["epoch"] for row in card["per_epoch"]] == list(history["epoch"]) and len(history) > 0
    assert Run(BUNDLED, name).recorded_status()["status"] == "finished"
    assert (folder / cards.CARD_MARKDOWN).read_text() == cards.markdown(card)  # generated, not edited


@pytest.mark.parametrize("name", NAMES)
def test_no_bundled_model_overfits_catastrophically(name):
    card = card_of(name)
    adversarial = config.TrainConfig.from_dict(card["config"]).adversarial
    assert card["catastrophic_overfitting"] is None
    assert card["sanity"]["flags"] == []  # no gradient masking: PGD beats FGSM, an unbounded PGD reaches ~0%
    if adversarial:  # multi-step robustness did not collapse while single-step robustness stayed
        assert card["sanity"]["pgd20_accuracy"] >= 0.5 * card["sanity"]["fgsm_accuracy"]
    assert cards.overfitting(cards.per_epoch(pd.read_csv(BUNDLED / name / "history.csv")), adversarial) is None
    for norm in ("linf", "l2"):  # robustness falls with the budget: no sign of gradient masking
        rows = sorted((r["eps"], r["robust_accuracy"]) for r in card["robustness"]["rows"]
                      if r["norm"] == norm and r["count"] == 1000)
        assert all(later <= earlier + 1e-9 for (_, earlier), (_, later) in zip(rows, rows[1:]))


def test_the_cards_meet_the_targets_they_claim():
    """standard: >= 92% clean. pgd-linf (issue 19's flagship) misses its aim of 88.0% clean and 78.5% under
    AutoAttack (86.5% and 76.1%); these floors keep it from slipping, and its training stays within the
    60 minutes the aim allows."""
    standard, robust = card_of("standard"), card_of("pgd-linf")
    assert standard["clean_accuracy"]["value"] >= 0.92
    assert robust["clean_accuracy"]["value"] >= 0.86 and robust["autoattack"]["robust_accuracy"] >= 0.76
    assert robust["autoattack"]["count"] == 10_000
    assert robust["training"]["wall_seconds"] <= 60 * 60


@pytest.mark.parametrize("name", NAMES)
def test_a_quick_remeasurement_agrees_with_the_card(name, fashion):
    card = card_of(name)
    model = models.load(BUNDLED / name / "model.keras")
    x, y = fashion.test.x[:RECHECK], fashion.test.y[:RECHECK]
    clean = robustness.accuracy(model, x, y)
    assert within_sampling_error(clean, card["clean_accuracy"]["value"], RECHECK), (clean, card["clean_accuracy"])
    norm, eps = ("l2", 1.5) if name == "pgd-l2" else ("linf", 0.1)
    row = next(r for r in card["robustness"]["rows"] if (r["norm"], r["eps"]) == (norm, eps))
    # The card's attack, one restart: never weaker than the card by more than sampling error.
    strong = robustness.strongest(eps, norm=norm, restarts=1)
    robust = robustness.worst_case_accuracy(model, x, y, strong).robust_accuracy
    assert within_sampling_error(robust, row["robust_accuracy"], RECHECK), (robust, row)


def test_the_registry_offers_the_five_models_standard_first_and_their_example_runs():
    bundled = [entry for entry in registry.list_models() if entry.source == "bundled"]
    assert [entry.key for entry in bundled] == [f"bundled:{name}" for name in NAMES]
    assert [run.id for run in registry.example_runs()] == list(NAMES)


def test_a_card_row_on_fewer_images_reads_the_first_ones_of_one_attack(trained_model, fashion):
    settings = cards.CardSettings(linf=(0.05,), l2=(), count=100, headline=("linf", 0.05), headline_count=200,
                                  batch_size=100)
    rows = cards.robustness_rows(trained_model, fashion, settings, report=lambda line: None)
    assert [(r["count"], r["seconds"] is None) for r in rows] == [(100, True), (200, False)]
    alone = robustness.worst_case_accuracy(trained_model, fashion.test.x[:100], fashion.test.y[:100],
                                           robustness.strongest(0.05), batch_size=100)
    assert rows[0]["robust_accuracy"] == alone.robust_accuracy
    assert [rows[0]["ce_only"], rows[0]["margin_only"]] == [o.robust_accuracy for o in alone.outcomes]


def test_overfitting_is_read_from_the_robust_accuracy_of_adversarial_epochs():
    def rows(robust, phase="adversarial"):
        return [{"epoch": i + 1, "phase": phase, "val_robust_accuracy": r} for i, r in enumerate(robust)]

    assert cards.overfitting(rows([0.5, 0.6, 0.62]), adversarial=True) is None
    assert "fell from 60.0% (epoch 2) to 10.0% (epoch 3)" in cards.overfitting(rows([0.5, 0.6, 0.1]), True)
    assert cards.overfitting(rows([0.5, 0.6, 0.1], phase="vanilla"), True) is None  # vanilla epochs may lose it
    assert cards.overfitting(rows([0.5, 0.6, 0.1]), adversarial=False) is None


def test_a_recipe_reads_as_one_sentence():
    content = config.TrainConfig.from_dict({"attack": {"method": "pgd", "steps": 10, "eps": 0.1},
                                            "schedule": {"epochs": 12}, "model": {"width": 2}}).to_dict()
    text = cards.describe(content)
    assert text.startswith("small_cnn (width x2), adversarial training on adversarial batches: PGD-10, Linf eps 0.1")
    assert "step 0.025" in text and "12 epochs" in text
    assert cards.describe(content | {"mode": "vanilla"}).startswith("small_cnn (width x2), standard training: 12 epochs")
    attack = config.TrainConfig.from_dict(content).attack
    assert np.isclose(trainer.pixel_attack(attack).effective_step_size, 0.025)


@pytest.mark.parametrize("name", [name for name in NAMES if "autoattack" in card_of(name)])
def test_an_autoattack_headline_is_the_whole_test_set_and_no_weaker_than_pgd(name):
    card = card_of(name)
    auto, headline = card["autoattack"], card["headline"]
    assert (auto["norm"], auto["eps"], auto["count"]) == (headline["norm"], headline["eps"], 10_000)
    after = list(auto["accuracy_after"].values())
    assert list(auto["accuracy_after"]) == ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]
    assert after == sorted(after, reverse=True) and after[-1] == auto["robust_accuracy"]
    assert after[0] == pytest.approx(card["clean_accuracy"]["value"])
    pgd = next(r for r in card["robustness"]["rows"] if (r["norm"], r["eps"], r["count"]) == (
        headline["norm"], headline["eps"], headline["count"]))
    assert auto["robust_accuracy"] <= pgd["robust_accuracy"] + 2 * pgd["standard_error"]
    assert list(card["metrics"].values()) == list(cards.headline_metrics(card).values())
    assert "AutoAttack standard" in list(card["metrics"])[1]


def test_the_autoattack_headline_leads_a_cards_figures(trained_model, fashion):
    # A budget that breaks the standard model at once: AutoAttack's later members have nothing left to attack.
    settings = cards.CardSettings(headline=("linf", 0.1), headline_count=200, batch_size=250)
    small = dataclasses.replace(fashion, test=data.Split(fashion.test.x[:60], fashion.test.y[:60]))
    auto = cards.autoattack_headline(trained_model, small, settings, report=lambda line: None)
    assert (auto["count"], auto["norm"], auto["eps"]) == (60, "linf", 0.1)
    assert auto["robust_accuracy"] < auto["accuracy_after"]["clean"]
    card = {"headline": {"norm": "linf", "eps": 0.1, "count": 200}, "autoattack": auto,
            "clean_accuracy": {"value": auto["accuracy_after"]["clean"], "count": 60},
            "robustness": {"rows": [{"norm": "linf", "eps": 0.1, "count": 200, "robust_accuracy": 0.5}]}}
    assert list(cards.headline_metrics(card).items())[1:] == [
        ("robust accuracy, Linf eps 0.1, AutoAttack standard (60 test images)", auto["robust_accuracy"]),
        ("robust accuracy, Linf eps 0.1, PGD-50 x 10 restarts, CE + margin (200 test images)", 0.5)]


def test_a_card_says_where_its_validation_images_came_from():
    older = card_of("fast-linf")  # trained before validation was held out of the training split
    assert "1,000 validation images taken from the test split" in cards.markdown(older)
    data_section = {key: value for key, value in older["config"]["data"].items() if key != "val_size"}
    held_out = older | {"config": older["config"] | {"data": data_section | {"validation_size": 2000}}}
    assert "2,000 validation images held out of the training split" in cards.markdown(held_out)
    default = older | {"config": older["config"] | {"data": data_section}}
    assert "5,000 validation images held out of the training split" in cards.markdown(default)


@pytest.mark.parametrize("name", NAMES)
def test_the_readme_table_quotes_each_card(name):
    """The README's figures of a bundled model are its card's, rounded as shown."""
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| `{name}` |"))
    clean, autoattack, pgd = [cell.strip() for cell in row.split("|")[3:6]]
    card = card_of(name)
    headline = card["headline"]
    strongest = next(r for r in card["robustness"]["rows"]
                     if (r["norm"], r["eps"], r["count"]) == (headline["norm"], headline["eps"], headline["count"]))
    assert clean == f"{card['clean_accuracy']['value']:.1%}"
    assert autoattack == f"{card['autoattack']['robust_accuracy']:.1%}"
    assert pgd == f"{strongest['robust_accuracy']:.1%} ({strongest['count']:,} images)"
