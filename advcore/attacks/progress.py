"""How far the attack under way is, for whoever listens (an evaluation's progress bar).

The loops that know (batches of images, restarts, target classes) sit several calls below the
evaluation that reports, and most callers never listen, so a context variable carries the listener
down rather than a callback argument on every attack. A listener hears (cost, units, stage): the
fraction of the work's cost done, the fraction of its units (images x attack passes) done, and the
innermost stage named. A loop reports one fraction of its own attack; `part` maps it onto the
enclosing work, where an attack's passes may differ in cost (an APGD-CE pass is cheap next to Square).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

# model evaluations per image for one forward pass and one input gradient (forward and backward)
FORWARD, GRADIENT = 1, 3

Listener = Callable[[float, float, "str | None"], None]
_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar("attack_progress", default=None)


def advance(fraction: float) -> None:
    """Called by an attack's host loop: this far (0..1) through the attack."""
    listener = _listener.get()
    if listener is not None:
        fraction = min(max(fraction, 0.0), 1.0)
        listener(fraction, fraction, None)


@contextlib.contextmanager
def listening(listener: Listener | None) -> Iterator[None]:
    """Within, attacks report to `listener` (None: to nobody)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


@contextlib.contextmanager
def part(cost: tuple[float, float], units: tuple[float, float], stage: str | None = None) -> Iterator[None]:
    """Within, an attack's 0..1 is `cost` = (start, share) of the enclosing work's cost and `units`
    = (start, share) of its units; `stage` names it unless an inner part names itself."""
    outer = _listener.get()
    if outer is None:
        yield
        return

    def mapped(cost_done: float, units_done: float, inner: str | None) -> None:
        outer(cost[0] + cost[1] * cost_done, units[0] + units[1] * units_done, inner or stage)

    with listening(mapped):
        mapped(0.0, 0.0, None)
        yield
        mapped(1.0, 1.0, None)


def parts(costs: list[float], stages: list[str | None], units: list[float] | None = None) -> list:
    """One `part` per piece of work, in order: they share the cost by `costs` and the units by `units`
    (equally if not given)."""
    units = units or [1.0] * len(costs)
    cost_starts, unit_starts = _starts(costs), _starts(units)
    return [part((cost_starts[i], costs[i] / (sum(costs) or 1.0)), (unit_starts[i], units[i] / sum(units)), stage)
            for i, stage in enumerate(stages)]


def _starts(weights: list[float]) -> list[float]:
    total, starts, start = sum(weights) or 1.0, [], 0.0
    for weight in weights:
        starts.append(start / total)
        start += weight
    return starts
