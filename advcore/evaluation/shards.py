"""Evaluations split by image index, for many machines.

Each shard measures every cell of a plan over one consecutive range of test images. `merge` joins the
shards' per-image outcomes into the Results the unsharded plan gives, image for image: random starts
are seeded by each image's index, so where an image is measured does not change its result. The
gradient-masking checks are whole-set figures, so each model's run as one more piece over all images.
What runs the pieces (Ray tasks: `advcore.jobs.ray_evaluation`) is not this module's concern.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from advcore.evaluation import plans, tracking

CellKey = tuple[str, str, float]  # (model label, attack name, eps)


def bounds(count: int, shards: int) -> list[tuple[int, int]]:
    """`shards` consecutive ranges of `count` images, sizes differing by one at most (fewer shards
    than asked when there are fewer images)."""
    cuts = np.linspace(0, count, max(1, min(shards, count)) + 1).round().astype(int)
    return list(zip(cuts[:-1].tolist(), cuts[1:].tolist()))


def cell_key(model_ref: plans.ModelRef, attack_ref: plans.AttackRef, eps: float) -> CellKey:
    return model_ref.label, attack_ref.name, eps


def checked_models(plan: plans.Plan) -> list[plans.ModelRef]:
    """The models whose gradient-masking checks the plan asks for."""
    return list(plan.models) if plans.checked_after(plan) else []


@dataclasses.dataclass(frozen=True)
class Piece:
    """One task of a sharded job: what its bar says, its units of work and its cost (the weight of its
    bar in the whole)."""
    label: str
    units: int
    cost: float


def pieces(plan: plans.Plan, ranges: list[tuple[int, int]], classes: int) -> list[Piece]:
    """The shards, in `ranges`' order, then each checked model's checks."""
    count = ranges[-1][1]
    work = ([(f"images {first}-{last - 1}", list(plans.plan_work(plan, last - first, classes, checks=False).values()))
             for first, last in ranges] +
            [(f"{model.label} / gradient-masking checks", [plans.plan_work(plan, count, classes)[model.label, plans.SANITY]])
             for model in checked_models(plan)])
    return [Piece(label, sum(w.units for w in piece), sum(w.cost for w in piece) or 1.0) for label, piece in work]


def combined(pieces: list[Piece], reports: dict[int, dict], elapsed: float, unit: str = tracking.UNIT) -> dict:
    """The job's progress (`tracking.Tracker`'s form) from each piece's latest report, weighted by its
    cost, with each piece's own under "shards"."""
    shards = []
    for index, piece in enumerate(pieces):
        report = reports.get(index, {})
        shards.append({"label": piece.label, "done": report.get("done", 0), "total": piece.units,
                       "fraction": report.get("fraction", 0.0), "cell": report.get("cell", "waiting for a node"),
                       **({"stage": report["stage"]} if "stage" in report else {})})
    costs = [piece.cost for piece in pieces]
    fraction = min(1.0, sum(shard["fraction"] * cost for shard, cost in zip(shards, costs)) / sum(costs))
    running = sum(1 for shard in shards if 0 < shard["fraction"] < 1)
    return {"done": sum(shard["done"] for shard in shards), "total": max(sum(shard["total"] for shard in shards), 1),
            "unit": unit, "fraction": fraction, "elapsed": elapsed,
            "cell": f"{len(shards)} shards, {running} running", "shards": shards}


def measure_shard(plan: plans.Plan, first: int, last: int, *, load_model: Callable[[str], object],
                  load_dataset: Callable, report: Callable[[dict], None],
                  should_stop: Callable[[], bool]) -> dict[CellKey, plans.Outcome]:
    """The plan's cells over test images [first, last): every cell finished, all of them unless asked
    to stop."""
    images = plans.test_images(plan, load_model, load_dataset).part(first, last)
    work = plans.plan_work(plan, last - first, len(images.class_names), checks=False)
    finished = {}
    try:
        for cell, outcome in plans.measure(plan, images, work, tracking.Tracker(list(work.values()), report),
                                           load_model=load_model, should_stop=should_stop):
            finished[cell_key(*cell)] = outcome
    except plans.Stopped:
        pass
    return finished


def check_model(plan: plans.Plan, label: str, *, load_model: Callable[[str], object], load_dataset: Callable,
                report: Callable[[dict], None]) -> tuple[list, dict]:
    """One model's gradient-masking checks over all the plan's images: (flags, figures)."""
    images = plans.test_images(plan, load_model, load_dataset)
    model_ref = next(model for model in plan.models if model.label == label)
    work = plans.plan_work(plan, len(images.y), len(images.class_names))[label, plans.SANITY]
    with tracking.Tracker([work], report).doing(work):
        return plans.run_checks(plan, load_model(model_ref.path), images.x, images.y)


def merge(plan: plans.Plan, images: plans.TestImages, parts: list[dict[CellKey, plans.Outcome]],
          checks: dict[str, tuple[list, dict]], out: Path) -> tuple[str, plans.Results]:
    """The shards' outcomes (in image order) as the plan's Results, saved into `out`: every cell that
    all shards finished, in the plan's order; "stopped" at the first one some shard did not."""
    results = plans.Results(plan, images.class_names)
    checked_after = plans.checked_after(plan)
    for model_ref, attack_ref, eps in plan.cells():
        key = cell_key(model_ref, attack_ref, eps)
        if not all(key in part for part in parts):
            return "stopped", results
        results.record(model_ref, attack_ref, eps, plans.Outcome.joined([part[key] for part in parts]), images.y)
        if (attack_ref, eps) == checked_after:
            if model_ref.label not in checks:
                results.save(out)
                return "stopped", results
            results.record_checks(model_ref.label, *checks[model_ref.label])
        results.save(out)
    return "finished", results
