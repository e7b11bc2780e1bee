"""Sharded evaluations without a cluster: shards measured here and merged equal the unsharded plan,
image for image (the Ray tests run the same pieces as Ray tasks)."""

import json

import numpy as np
import pandas as pd
import pytest

from advcore import models
from advcore.evaluation import plans, shards, tracking
from advcore.storage import data
from tests.test_evaluation import ROBUST, STANDARD


def sanity_plan(count=120) -> plans.Plan:
    return plans.Plan.from_dict({
        "models": [{"label": "standard", "path": STANDARD}, {"label": "robust", "path": ROBUST}],
        "attacks": [{"name": "pgd", "method": "pgd", "options": {"steps": 5}},
                    {"name": "AutoAttack", "method": "autoattack", "options": {"version": ["apgd-ce"]}}],
        "eps": {"linf": [0.05, 0.1]}, "count": count, "batch_size": 64, "sanity": True})


def without_seconds(results: dict) -> dict:
    """results.json's content less the wall times, which differ from run to run."""
    for cell in results["cells"]:
        cell.pop("seconds")
    for figures in results["sanity"].values():
        for point in figures["curve"]:
            point.pop("seconds")
    return results


@pytest.mark.parametrize("count, asked, sizes", [(10, 3, [3, 4, 3]), (200, 4, [50] * 4), (2, 5, [1, 1]),
                                                 (7, 1, [7])])
def test_bounds_cover_every_image_once_in_near_equal_consecutive_ranges(count, asked, sizes):
    ranges = shards.bounds(count, asked)
    assert [last - first for first, last in ranges] == sizes
    assert ranges[0][0] == 0 and ranges[-1][1] == count
    assert all(previous[1] == following[0] for previous, following in zip(ranges, ranges[1:]))


def test_shards_merged_equal_the_unsharded_plan_image_for_image(tmp_path, fashion):
    plan = sanity_plan()
    plans.run_plan(plan, tmp_path / "whole")
    parts = [shards.measure_shard(plan, first, last, load_model=models.load, load_dataset=data.load,
                                  report=lambda progress: None, should_stop=lambda: False)
             for first, last in shards.bounds(plan.count, 3)]
    checks = {label: shards.check_model(plan, label, load_model=models.load, load_dataset=data.load,
                                        report=lambda progress: None) for label in ("standard", "robust")}
    images = plans.test_images(plan, models.load, data.load)
    outcome, _ = shards.merge(plan, images, parts, checks, tmp_path / "merged")
    assert outcome == "finished"
    whole, merged = (pd.read_csv(tmp_path / name / plans.IMAGES_FILE, keep_default_na=False) for name in ("whole", "merged"))
    assert len(whole) == len(plan.cells()) * plan.count
    pd.testing.assert_frame_equal(whole, merged)
    assert set(merged["broken_by"]) >= {"", "apgd-ce", "clean"}  # AutoAttack's own per-image verdicts
    assert (without_seconds(json.loads((tmp_path / "whole" / "results.json").read_text())) ==
            without_seconds(json.loads((tmp_path / "merged" / "results.json").read_text())))


def test_a_stopped_shard_merges_only_the_cells_every_shard_finished(tmp_path, fashion):
    plan = sanity_plan(count=100)  # the shards' first cells are the standard model's PGD at 0.05 and 0.1
    asked = iter([False, False, True])  # the second shard stops before its second cell's first slice
    first = shards.measure_shard(plan, 0, 50, load_model=models.load, load_dataset=data.load,
                                 report=lambda progress: None, should_stop=lambda: False)
    second = shards.measure_shard(plan, 50, 100, load_model=models.load, load_dataset=data.load,
                                  report=lambda progress: None, should_stop=lambda: next(asked, True))
    assert len(first) == len(plan.cells()) and len(second) == 2
    outcome, results = shards.merge(plan, plans.test_images(plan, models.load, data.load), [first, second], {},
                                    tmp_path)
    assert outcome == "stopped" and [(row["attack"], row["eps"]) for row in results.rows] == [("pgd", 0.05),
                                                                                             ("pgd", 0.1)]
    saved = pd.read_csv(tmp_path / plans.IMAGES_FILE)
    assert len(saved) == 2 * plan.count and list(saved["image"][:plan.count]) == list(range(plan.count))


def test_the_whole_progress_weighs_each_piece_by_its_cost_and_keeps_its_totals():
    plan = sanity_plan(count=100)
    pieces = shards.pieces(plan, shards.bounds(100, 2), classes=10)
    assert [piece.label for piece in pieces] == ["images 0-49", "images 50-99", "standard / gradient-masking checks",
                                                 "robust / gradient-masking checks"]
    half_the_images = sum(work.cost for work in plans.plan_work(plan, 50, 10, checks=False).values())
    costs = np.array([half_the_images] * 2 + [plans.plan_work(plan, 100, 10)[label, plans.SANITY].cost
                                              for label in ("standard", "robust")])
    assert [piece.cost for piece in pieces] == pytest.approx(costs)
    total = sum(piece.units for piece in pieces)
    assert total == sum(work.units for work in plans.plan_work(plan, 100, 10).values())  # as unsharded
    waiting = shards.combined(pieces, {}, elapsed=0.0)
    assert waiting["done"] == 0 and waiting["total"] == total and waiting["fraction"] == 0.0
    assert [shard["cell"] for shard in waiting["shards"]] == ["waiting for a node"] * 4
    half = shards.combined(pieces, {0: {"done": 10, "fraction": 1.0, "cell": "robust / pgd / eps 0.1"},
                                    3: {"done": 5, "fraction": 0.5, "cell": "checks", "stage": "check: zero"}}, 2.0)
    assert half["done"] == 15 and half["total"] == total and half["unit"] == tracking.UNIT
    assert half["fraction"] == pytest.approx((costs[0] + 0.5 * costs[3]) / costs.sum())
    assert half["cell"] == "4 shards, 1 running" and half["shards"][3]["stage"] == "check: zero"
