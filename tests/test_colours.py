"""One colour per model, the same on every page: the models' names on each page map to one colour,
and no two models share one while the palette lasts."""

import time

import numpy as np
import pandas as pd
import pytest
from test_pages import make_run

from app import attack_charts, charts, colours, histories, registry
from app.interpret import interpret_views


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_RUNS_DIR", str(tmp_path / "runs"))
    colours._index_by_name.clear()
    made = [make_run(tmp_path / "runs", f"run-{i}", ["vanilla", "adversarial"]) for i in range(4)]
    yield made
    colours._index_by_name.clear()


def test_each_page_name_of_a_model_has_its_one_colour_and_models_differ(runs):
    per_model = [{colours.colour(name) for name in names} for names in colours.names_in_order(str(runs[0].root))]
    assert all(len(model) == 1 for model in per_model)  # History's and the pickers' names agree
    assert len(set.union(*per_model)) == len(per_model) == 5 + 4  # bundled models, then the runs
    run = runs[2]
    assert colours.colour(histories.run_label(run)) == colours.colour(registry.run_entry_label(run))


def test_a_new_run_changes_no_colour_of_an_older_one(runs):
    before = {run.id: colours.colour(histories.run_label(run)) for run in runs}
    time.sleep(1.1)  # run ids start with their creation second
    make_run(runs[0].root, "newest", ["vanilla"])
    colours._index_by_name.clear()
    assert {run.id: colours.colour(histories.run_label(run)) for run in runs} == before


def test_evaluate_history_and_ara_charts_draw_a_model_in_its_colour(runs):
    first, second = (registry.run_entry_label(run) for run in runs[:2])
    cells = pd.DataFrame([{"model": model, "attack": attack, "norm": "linf", "eps": eps, "robust_accuracy": 0.5}
                          for model in (first, second) for attack in ("pgd", "fgsm") for eps in (0.05, 0.1)])
    lines = {trace.name: trace.line for trace in attack_charts.robustness_figure(cells).data}
    assert lines[f"{first} / pgd"].color == lines[f"{first} / fgsm"].color != lines[f"{second} / pgd"].color
    assert lines[f"{first} / pgd"].dash != lines[f"{first} / fgsm"].dash  # attacks differ by dash
    history = {histories.run_label(runs[0]): runs[0].history()}
    (trace,) = charts.metric_figure(history, "loss").data
    assert trace.line.color == lines[f"{first} / pgd"].color
    table = {"attack_rmse": [0.1, 0.2], "btr_rmse": [0.1, 0.3]}
    ara = interpret_views.ara_figure({first: table, second: table}, 10)
    assert [t.line.color for t in ara.data] == [colours.colour(first)] * 2 + [colours.colour(second)] * 2


def test_a_robustness_chart_of_one_eps_spans_zero_to_that_eps():
    """Finding 9 of issue 30: one eps drew tiny points on an axis from -0.5 to 1."""
    cells = pd.DataFrame([{"model": "m", "attack": "pgd", "norm": norm, "eps": eps, "robust_accuracy": 0.5}
                          for norm, eps in (("linf", 0.1), ("l2", 1.5))])
    figure = attack_charts.robustness_figure(cells)
    assert tuple(figure.layout.xaxis.range) == pytest.approx((0, 0.108))
    assert tuple(figure.layout.xaxis2.range) == pytest.approx((0, 1.62))
    assert all(trace.marker.size == 9 for trace in figure.data)


def _cielab(hex_colour: str) -> np.ndarray:
    """sRGB (D65) to CIELAB, from the standard formulas."""
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    f = np.where((ratio := xyz / np.array([0.95047, 1.0, 1.08883])) > 216 / 24389, np.cbrt(ratio),
                 ratio * 24389 / 27 / 116 + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_every_two_model_colours_are_far_apart():
    """Finding 9 of issue 30: two runs drew in near-identical pinks."""
    labs = [_cielab(colour) for colour in colours.PALETTE]
    closest = min(np.linalg.norm(a - b) for i, a in enumerate(labs) for b in labs[i + 1:])
    assert len(colours.PALETTE) >= 20 and closest >= 30
    assert np.linalg.norm(_cielab("#FF97FF") - _cielab("#DA60CA")) < 30  # the two pinks of the old palette
