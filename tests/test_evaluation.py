"""Evaluation plans: checked before any work, measured cell by cell, equal to advcore.evaluation.robustness."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advcore import attacks
from advcore.evaluation import plans, robustness

ROOT = Path(__file__).resolve().parents[1]
STANDARD = str(ROOT / "assets" / "models" / "standard" / "model.keras")
ROBUST = str(ROOT / "assets" / "models" / "pgd-linf" / "model.keras")


def plan_dict(**changes) -> dict:
    return {"models": [{"label": "standard", "path": STANDARD}, {"label": "robust", "path": ROBUST}],
            "attacks": [{"name": "pgd", "method": "pgd", "options": {"steps": 5}},
                        {"name": "fgm l2", "method": "fgm", "options": {"scaling": "l2"}}],
            "eps": {"linf": [0.1, 0, 0.05], "l2": [1.0]}, "count": 300, "batch_size": 100} | changes


@pytest.mark.parametrize("changes, message", [
    ({"attacks": []}, "attacks: choose at least one attack"),
    ({"models": []}, "models: choose at least one model"),
    ({"eps": {"linf": [0.1]}}, "attack 'fgm l2': eps.l2: attack 'fgm l2' needs at least one l2 eps"),
    ({"eps": {"linf": [-0.1], "l2": [1]}}, "eps.linf: -0.1 is not a budget >= 0"),
    ({"count": 0}, "count: evaluate 1..10000 images"),
    ({"attacks": [{"name": "x", "method": "cw", "options": {}}]}, "unknown attack method 'cw'"),
    ({"attacks": [{"name": "x", "method": "fgsm", "options": {"steps": 3}}]}, "fgsm takes one step"),
    ({"attacks": [{"name": "x", "method": "pgd"}]}, "the plan is malformed"),
    ({"eps": {"linf": ["lots"]}}, "the plan is malformed: could not convert string to float: 'lots'"),
    ({"attacks": [{"name": "aa", "method": "autoattack", "options": {"version": "fast"}}]},
     "attack 'aa': unknown AutoAttack version 'fast'"),
    ({"attacks": [{"name": "aa", "method": "autoattack", "options": {"steps": 3}}]},
     "autoattack takes the options norm and version, not steps"),
    ({"attacks": [{"name": "aa", "method": "autoattack", "options": {"norm": "l1"}}]}, "eps.l1: attack 'aa' needs"),
])
def test_bad_plans_are_refused_before_any_work(changes, message):
    with pytest.raises(plans.PlanError, match=message.replace("(", r"\(")):
        plans.Plan.from_dict(plan_dict(**changes))


def test_a_plan_without_eps_is_refused():
    content = plan_dict()
    del content["eps"]
    with pytest.raises(plans.PlanError, match="the plan has no 'eps'"):
        plans.Plan.from_dict(content)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, fashion):
    out = tmp_path_factory.mktemp("evaluation")
    plan = plans.Plan.from_dict(plan_dict(count=1000, batch_size=100))
    reports = []
    outcome, results = plans.run_plan(plan, out, report=reports.append)
    return plan, out, outcome, results, reports


def test_run_plan_equals_the_robustness_curve(finished, fashion):
    plan, out, outcome, results, reports = finished
    assert outcome == "finished" and len(results.rows) == len(plan.cells()) == 2 * (3 + 1)
    from advcore import models
    from advcore.storage import data

    test = data.load("fashion_mnist").test
    model = models.load(STANDARD)
    curve = robustness.robustness_curve(model, test.x[:1000], test.y[:1000], attacks.pgd(0.1, steps=5), [0, 0.05, 0.1],
                                        batch_size=100)
    ours = results.frame().query("model == 'standard' and attack == 'pgd'")
    np.testing.assert_array_equal(ours["eps"], curve["eps"])
    np.testing.assert_array_equal(ours["robust_accuracy"], curve["robust_accuracy"])
    assert reports[-1]["done"] == reports[-1]["total"] == 8 * 1000  # one pass of 1000 images per cell
    assert reports[-1]["fraction"] == 1.0 and reports[-1]["unit"] == "image-attacks"
    assert {r["total"] for r in reports} == {8000}  # known from the first report on
    for earlier, later in zip(reports, reports[1:]):
        assert earlier["done"] <= later["done"] and earlier["fraction"] <= later["fraction"]


def test_a_ce_and_margin_cell_is_their_per_sample_worst_case_however_sliced(tmp_path):
    plan = plans.Plan.from_dict(plan_dict(
        models=[{"label": "robust", "path": ROBUST}], eps={"linf": [0.1]}, count=1200, batch_size=100,
        attacks=[{"name": "worst", "method": "pgd", "options": {"steps": 5, "loss": "ce+margin"}}]))
    _, results = plans.run_plan(plan, tmp_path)  # two slices: 1000 + 200 images
    from advcore import models
    from advcore.storage import data

    test = data.load("fashion_mnist").test
    x, y = test.x[:1200], test.y[:1200]
    specs = [attacks.pgd(0.1, steps=5, loss=loss) for loss in ("ce", "margin")]
    whole = robustness.worst_case_accuracy(models.load(ROBUST), x, y, specs, batch_size=100)
    assert results.rows[0]["robust_accuracy"] == whole.robust_accuracy
    assert whole.robust_accuracy < whole.outcomes[0].robust_accuracy  # the margin attack fools images CE left


def test_per_class_results_add_up_and_files_are_written(finished):
    plan, out, _, results, _ = finished
    frame = results.frame()
    classes = [c for c in frame.columns if c.startswith("class ")]
    from advcore.storage import data

    counts = np.bincount(data.load("fashion_mnist").test.y[:1000], minlength=10)
    weighted = (frame[classes].to_numpy() * counts).sum(axis=1) / counts.sum()
    np.testing.assert_allclose(weighted, frame["robust_accuracy"], atol=1e-9)
    saved = json.loads((out / "results.json").read_text())
    assert saved["plan"] == plan.to_dict() and len(saved["cells"]) == len(frame)
    assert (out / "results.csv").read_text().splitlines()[0].startswith("model,attack,norm,eps,clean_accuracy")
    robust = frame.query("model == 'robust' and attack == 'pgd' and eps == 0.1")["robust_accuracy"].item()
    standard = frame.query("model == 'standard' and attack == 'pgd' and eps == 0.1")["robust_accuracy"].item()
    assert robust > 0.5 > 0.1 > standard


def test_a_stop_keeps_the_finished_cells(tmp_path):
    plan = plans.Plan.from_dict(plan_dict(count=200, models=plan_dict()["models"][:1]))
    calls = []
    outcome, results = plans.run_plan(plan, tmp_path, should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert outcome == "stopped" and len(results.rows) == 2
    assert len(json.loads((tmp_path / "results.json").read_text())["cells"]) == 2


def test_masking_flags_come_from_a_rising_curve(tmp_path):
    results = plans.Results(plans.Plan.from_dict(plan_dict()), ["a", "b"])
    for eps, accuracy in ((0.0, 0.9), (0.05, 0.3), (0.1, 0.6)):
        results.rows.append({"model": "m", "attack": "pgd", "norm": "linf", "eps": eps, "robust_accuracy": accuracy,
                             "count": 1000})
    plans._finish_curve(results, plans.ModelRef("m", "p"), plans.AttackRef("pgd", "pgd", {}))
    assert [flag["code"] for flag in results.flags] == ["accuracy_rises_with_eps"]


def test_an_autoattack_cell_keeps_each_components_accuracy(tmp_path, fashion):
    plan = plans.Plan.from_dict(plan_dict(
        models=[{"label": "robust", "path": ROBUST}], count=40, batch_size=40,
        attacks=[{"name": "AutoAttack", "method": "autoattack", "options": {"version": ["apgd-ce", "apgd-t"]}},
                 {"name": "pgd", "method": "pgd", "options": {"steps": 20}}], eps={"linf": [0.1]}))
    outcome, results = plans.run_plan(plan, tmp_path)
    auto, pgd = results.rows
    assert outcome == "finished" and auto["robust_accuracy"] == auto["after apgd-t"] <= auto["after apgd-ce"]
    assert auto["robust_accuracy"] <= pgd["robust_accuracy"]
    saved = json.loads((tmp_path / "results.json").read_text())["cells"][0]
    assert saved["after apgd-ce"] == auto["after apgd-ce"]
    assert "after apgd-ce" not in pgd


def test_autoattack_flags_name_square_and_the_apgd_ce_gap():
    clean = {"clean_accuracy": 0.9}
    quiet = clean | {"after apgd-ce": 0.5, "after apgd-t": 0.48, "after square": 0.48}
    assert robustness.autoattack_flags(quiet, 0.01) == []
    loud = robustness.autoattack_flags(clean | {"after apgd-ce": 0.5, "after apgd-t": 0.46, "after square": 0.4}, 0.01)
    assert [flag.code for flag in loud] == ["square_beats_gradients", "apgd_ce_far_from_ensemble"]
    assert "6.0%" in loud[0].message and "10.0%" in loud[1].message


def test_cli_runs_a_plan_file(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(plan_dict(count=100, models=plan_dict()["models"][:1],
                                                             sanity=True)))
    done = subprocess.run([sys.executable, "-m", "advcore", "evaluate", "--plan", str(tmp_path / "plan.json"),
                           "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "standard / pgd / eps 0.1: robust accuracy" in done.stdout
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(saved["cells"]) == 4 and "standard" in saved["sanity"]
    bad = subprocess.run([sys.executable, "-m", "advcore", "evaluate", "--plan", str(tmp_path / "missing.json"),
                          "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "plan file" in bad.stderr and "cannot be read" in bad.stderr
