"""Plotly figures of attacks: class probabilities before and after, and an attack's path per step."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts import LEGEND

CLEAN, ADVERSARIAL = "#1f77b4", "#d62728"


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
        go.Bar(y=names, x=clean[classes][::-1], name="original", orientation="h", marker_color=CLEAN,
               texttemplate="%{x:.1%}", textposition="outside"),
        go.Bar(y=names, x=adversarial[classes][::-1], name="adversarial", orientation="h",
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
    figure.update_layout(height=420, legend=LEGEND, margin={"l": 10, "r": 10, "t": 60, "b": 30})
    return figure
