"""Plotly figures of attacks: probabilities before and after, an attack's path, robustness results."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts import LEGEND
from app.colours import colour as model_colour

CLEAN, ADVERSARIAL = "#1f77b4", "#d62728"
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")  # one per attack; the colour is the model's


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def top_classes(clean: np.ndarray, adversarial: np.ndarray, k: int, always: list[int]) -> list[int]:
    """The k most likely classes before and after (and the `always` ones), most likely first."""
    chosen = set(np.argsort(-clean)[:k]) | set(np.argsort(-adversarial)[:k]) | set(always)
    return sorted(chosen, key=lambda c: -max(clean[c], adversarial[c]))


def probability_bars(class_names: list[str], clean: np.ndarray, adversarial: np.ndarray, k: int = 5,
                     always: list[int] = ()) -> go.Figure:
    classes = top_classes(clean, adversarial, k, list(always))
    names = [class_names[c] for c in classes][::-1]  # horizontal bars read top-down
    figure = go.Figure([
        go.Bar(y=names, x=clean[classes][::-1].tolist(), name="original", orientation="h", marker_color=CLEAN,
               texttemplate="%{x:.1%}", textposition="outside"),
        go.Bar(y=names, x=adversarial[classes][::-1].tolist(), name="adversarial", orientation="h",
               marker_color=ADVERSARIAL, texttemplate="%{x:.1%}", textposition="outside"),
    ])
    figure.update_layout(title="Class probabilities (top classes)", barmode="group", legend=LEGEND,
                         xaxis={"range": [0, 1.15], "tickformat": ".0%"}, height=120 + 50 * len(classes),
                         margin={"l": 10, "r": 10, "t": 60, "b": 30})
    return figure


def step_figure(objective: np.ndarray, probabilities: np.ndarray, lines: dict[str, int],
                objective_name: str) -> go.Figure:
    """The attack's objective and chosen class probabilities after each step (step 0: the start)."""
    steps = np.arange(len(objective))
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           subplot_titles=(objective_name, "probability"))
    figure.add_trace(go.Scatter(x=steps, y=objective, mode="lines+markers", name=objective_name,
                                line={"color": "#555"}, showlegend=False), row=1, col=1)
    for (name, cls), colour in zip(lines.items(), (CLEAN, ADVERSARIAL, "#2ca02c")):
        figure.add_trace(go.Scatter(x=steps, y=probabilities[:, cls], mode="lines+markers", name=name,
                                    line={"color": colour}), row=2, col=1)
    figure.update_yaxes(range=[0, 1], tickformat=".0%", row=2, col=1)
    figure.update_xaxes(title_text="step", row=2, col=1)
    figure.update_layout(height=460, legend=LEGEND | {"y": -0.2, "yanchor": "top"},  # under: the titles stay clear
                         margin={"l": 10, "r": 10, "t": 40, "b": 30})
    return figure


def robustness_figure(cells) -> go.Figure:
    """Robust accuracy against eps, one line per model x attack (L2 attacks on their own axis)."""
    norms = sorted(cells["norm"].unique(), key=lambda n: n != "linf")
    attacks = list(cells["attack"].unique())
    figure = make_subplots(rows=1, cols=len(norms), subplot_titles=[f"{n} eps" for n in norms])
    for (model, attack), curve in cells.groupby(["model", "attack"], sort=False):
        column = norms.index(curve["norm"].iloc[0]) + 1
        line = {"color": model_colour(model), "dash": DASHES[attacks.index(attack) % len(DASHES)]}
        figure.add_trace(go.Scatter(x=curve["eps"], y=curve["robust_accuracy"], mode="lines+markers",
                                    name=f"{model} / {attack}", line=line, marker={"size": 9}), row=1, col=column)
    for column, norm in enumerate(norms, start=1):  # from eps 0 to the largest: one eps is a point, not a speck
        largest = float(cells.loc[cells["norm"] == norm, "eps"].max())
        figure.update_xaxes(range=[0, 1.08 * largest if largest > 0 else 1], row=1, col=column)
    figure.update_yaxes(range=[0, 1.02], tickformat=".0%", title_text="robust accuracy", col=1)
    figure.update_yaxes(range=[0, 1.02], tickformat=".0%")
    figure.update_layout(title="Robust accuracy vs eps", legend=LEGEND | {"y": -0.25, "yanchor": "top"},
                         height=460, margin={"l": 10, "r": 10, "t": 60, "b": 30})
    return figure


def per_class_figure(cells, eps: float, class_columns: list[str]) -> go.Figure:
    """Robust accuracy per class at one eps: rows model x attack, a column per class."""
    at = cells[cells["eps"] == eps]
    labels = [f"{m} / {a}" for m, a in zip(at["model"], at["attack"])]
    figure = go.Figure(go.Heatmap(z=at[class_columns].to_numpy(dtype=float), x=[c.removeprefix("class ") for c in
                                  class_columns], y=labels, zmin=0, zmax=1, colorscale="RdYlGn",
                                  texttemplate="%{z:.0%}", colorbar={"tickformat": ".0%"}))
    figure.update_layout(title=f"Robust accuracy per class at eps {eps:.4g}", height=140 + 40 * len(labels),
                         margin={"l": 10, "r": 10, "t": 60, "b": 30})
    return figure
