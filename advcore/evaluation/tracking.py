"""An evaluation's progress as its page shows it.

It counts real work: image-attacks, one image through one attack pass (an AutoAttack component, one
loss of a worst-case attack, one gradient-masking check). The bar and the time left follow the work's
cost instead (model evaluations, `attacks.progress`), since passes differ a hundredfold: APGD-CE's
100 steps against Square's 5,000 queries. Images an earlier pass already broke cost nothing, so an
early estimate errs long (`benchmarks/evaluation_progress.py` measures how far). The totals are
known before the first image, so they never change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable, Iterator

from advcore.attacks import progress

UNIT = "image-attacks"


@dataclasses.dataclass(frozen=True)
class Work:
    label: str
    units: int  # image-attacks
    cost: float  # model evaluations, at most


class Tracker:
    """Reports `{done, total, unit, fraction, elapsed, cell, stage}` through `report`: at each new
    piece of work or stage, else at most every `every` seconds."""

    def __init__(self, work: list[Work], report: Callable[[dict], None], every: float = 0.5):
        self.report, self.every = report, every
        self.total_units, self.total_cost = sum(w.units for w in work), sum(w.cost for w in work) or 1.0
        self.done_units, self.done_cost = 0, 0.0
        self.began, self.last, self.said = time.perf_counter(), -float("inf"), None

    @contextlib.contextmanager
    def doing(self, work: Work) -> Iterator[None]:
        """Within, the attacks' own progress is this piece of work's."""
        def heard(cost: float, units: float, stage: str | None, force: bool = False) -> None:
            self._report(work.label, stage, self.done_units + work.units * units, self.done_cost + work.cost * cost,
                         force)

        with progress.listening(heard):
            heard(0.0, 0.0, None)
            yield
            heard(1.0, 1.0, None, force=True)
        self.done_units += work.units
        self.done_cost += work.cost

    def _report(self, label: str, stage: str | None, units: float, cost: float, force: bool) -> None:
        now = time.perf_counter()
        if not force and (label, stage) == self.said and now - self.last < self.every:
            return
        self.said, self.last = (label, stage), now
        self.report({"done": min(round(units), self.total_units), "total": max(self.total_units, 1), "unit": UNIT,
                     "fraction": min(cost / self.total_cost, 1.0), "elapsed": now - self.began, "cell": label,
                     **({"stage": stage} if stage else {})})
