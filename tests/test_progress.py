"""Evaluation progress counts real work (images x attack passes) with totals known from the start, and
moves its bar and estimate by the work's cost: closed-form cases of the nesting, then real runs."""

from pathlib import Path

import pytest

from advcore.attacks import autoattack, progress
from advcore.evaluation import plans, tracking
from app.evaluate.evaluation_views import progress_text, shard_lines
from app.text import literal

ROOT = Path(__file__).resolve().parents[1]
ROBUST = str(ROOT / "assets" / "models" / "pgd-linf" / "model.keras")


def heard() -> tuple[list, progress.Listener]:
    events = []
    return events, lambda cost, units, stage: events.append((round(cost, 6), round(units, 6), stage))


def test_parts_map_an_attacks_own_fraction_onto_the_whole_by_cost_and_by_units():
    events, listener = heard()
    with progress.listening(listener):
        cheap, dear = progress.parts([1.0, 3.0], ["cheap", "dear"])
        with cheap:
            progress.advance(0.5)
        with dear:
            progress.advance(0.5)
    assert (0.125, 0.25, "cheap") in events  # half of a quarter of the cost, half of half the passes
    assert (0.625, 0.75, "dear") in events
    assert events[-1] == (1.0, 1.0, "dear")


def test_an_inner_stage_names_itself_and_nesting_composes():
    events, listener = heard()
    with progress.listening(listener):
        with progress.part((0.5, 0.5), (0.5, 0.5), "outer"):
            with progress.parts([1.0, 1.0], [None, "inner"])[1]:
                progress.advance(1.0)
    assert (1.0, 1.0, "inner") in events and (0.5, 0.5, "outer") in events


def test_without_a_listener_attacks_report_to_nobody():
    progress.advance(0.5)  # no error, nothing kept
    with progress.part((0, 1), (0, 1), "alone"):
        progress.advance(1.0)


def test_the_tracker_counts_units_and_weighs_the_bar_by_cost():
    reports = []
    tracker = tracking.Tracker([tracking.Work("a", 100, 100.0), tracking.Work("b", 100, 900.0)], reports.append)
    with tracker.doing(tracking.Work("a", 100, 100.0)):
        pass
    assert reports[-1] | {"elapsed": 0} == {"done": 100, "total": 200, "unit": "image-attacks", "fraction": 0.1,
                                            "elapsed": 0, "cell": "a"}
    with tracker.doing(tracking.Work("b", 100, 900.0)):
        progress.advance(0.5)
    assert [r["fraction"] for r in reports if r["cell"] == "b"][-1] == 1.0


def test_autoattack_names_each_component_and_ends_at_the_whole_cost(tmp_path):
    from advcore import models
    from advcore.storage import data

    model = models.load(ROBUST)
    test = data.load("fashion_mnist", splits=("test",)).test
    events, listener = heard()
    with progress.listening(listener):
        autoattack.autoattack(model, test.x[:8], test.y[:8], eps=0.1, version=["apgd-ce", "apgd-dlr"], batch_size=4)
    stages = [stage for _, _, stage in events]
    assert stages.index("apgd-ce (1 of 2)") < stages.index("apgd-dlr (2 of 2)")
    costs = [cost for cost, _, _ in events]
    assert costs == sorted(costs) and costs[-1] == 1.0
    assert (0.5, 0.5, "apgd-dlr (2 of 2)") in events  # the two passes cost alike


def test_an_autoattack_plan_reports_its_components_with_fixed_totals(tmp_path):
    plan = plans.Plan.from_dict({"models": [{"label": "robust", "path": ROBUST}],
                                 "attacks": [{"name": "aa", "method": "autoattack",
                                              "options": {"version": ["apgd-ce", "square"]}}],
                                 "eps": {"linf": [0.1]}, "count": 6, "batch_size": 6, "sanity": True})
    reports = []
    outcome, _ = plans.run_plan(plan, tmp_path, report=reports.append)
    assert outcome == "finished"
    assert {r["total"] for r in reports} == {6 * 2 + 6 * 6}  # two components, six check passes
    assert {"apgd-ce (1 of 2)", "square (2 of 2)", "check: unbounded PGD"} <= {r.get("stage") for r in reports}
    assert reports[-1]["done"] == 48 and reports[-1]["fraction"] == 1.0
    assert [r["cell"] for r in reports][-1] == "robust / gradient-masking checks"


@pytest.mark.parametrize("status, where, expected", [
    ("queued", {}, (0.0, "queued: waiting for the worker")),
    ("running", {"cell": "loading the models and the test images"}, (0.0, "loading the models and the test images")),
    ("running", {"done": 1000, "total": 4000, "unit": "image-attacks", "fraction": 0.25, "elapsed": 10.0,
                 "cell": "robust / aa / eps 0.1", "stage": "apgd-t (2 of 4)"},
     (0.25, "1,000 of 4,000 image-attacks · robust / aa / eps 0.1 · apgd-t (2 of 4) · 0:00:10 elapsed, "
            "about 0:00:30 left")),
    ("running", {"done": 0, "total": 10, "unit": "image-attacks", "fraction": 0.0, "elapsed": 1.0, "cell": "m"},
     (0.0, "0 of 10 image-attacks · m · 0:00:01 elapsed")),
    ("running", {"done": 40, "total": 100, "unit": "%", "elapsed": 20.0, "cell": "ARA"},  # a profile job
     (0.4, "40% · ARA · 0:00:20 elapsed, about 0:00:30 left")),
])
def test_the_page_says_what_is_done_what_runs_and_what_is_left(status, where, expected):
    assert progress_text(status, where) == expected


def test_a_sharded_jobs_bars_count_image_attacks_or_a_profiles_percent():
    evaluation = {"unit": "image-attacks", "shards": [
        {"label": "images 0-49", "done": 120, "total": 200, "fraction": 0.5, "cell": "robust / pgd / eps 0.1"}]}
    assert shard_lines(evaluation) == [(0.5, literal("images 0-49: 120 of 200 · robust / pgd / eps 0.1"))]
    sharded_profile = {"unit": "%", "shards": [
        {"label": "images 0-15", "done": 40, "total": 100, "fraction": 0.4, "cell": "btr ARA"},
        {"label": "class activations and traversals", "done": 0, "total": 100, "fraction": 0.0}]}
    assert shard_lines(sharded_profile) == [(0.4, literal("images 0-15: 40% · btr ARA")),
                                            (0.0, literal("class activations and traversals: 0%"))]
