"""Plotly figures of training histories: runs overlaid in stable colours, adversarial epochs shaded.

One run: its adversarial epochs are shaded bands behind the lines. Several runs: a strip under the
chart shows each run's adversarial epochs in the run's colour. Smoothing draws an exponential moving
average over a faint raw line.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.colours import colour as model_colour
from app.histories import with_time

SHADE = "rgba(214, 39, 40, 0.12)"
LEGEND = {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0, "yanchor": "bottom"}  # right of the title


def smooth(values: pd.Series, weight: float) -> pd.Series:
    """TensorBoard-style exponential moving average; weight 0 returns the values."""
    return values.ewm(alpha=1 - weight, adjust=True).mean() if weight > 0 else values


def adversarial_blocks(history: pd.DataFrame) -> list[tuple[int, int]]:
    """(first row, last row) of each run of consecutive adversarial epochs."""
    blocks, start = [], None
    phases = list(history["phase"])
    for i, current in enumerate(phases + ["end"]):
        if current == "adversarial" and start is None:
            start = i
        elif current != "adversarial" and start is not None:
            blocks.append((start, i - 1))
            start = None
    return blocks


def _span(history: pd.DataFrame, first: int, last: int, x: str) -> tuple[float, float]:
    if x == "time":
        return history["time_start"].iloc[first], history["time_end"].iloc[last]
    return history["epoch"].iloc[first] - 0.5, history["epoch"].iloc[last] + 0.5


def metric_figure(histories: dict[str, pd.DataFrame], metric: str, *, x: str = "epoch",
                  smoothing: float = 0.0, log_y: bool = False, height: int = 360) -> go.Figure:
    strip = len(histories) > 1
    figure = make_subplots(rows=2 if strip else 1, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                           row_heights=[0.82, 0.18] if strip else [1.0])
    x_column = "time_end" if x == "time" else "epoch"
    shapes = []  # set in one call: adding hundreds of shapes one by one takes seconds
    for index, (label, history) in enumerate(histories.items()):
        history = with_time(history)
        colour = model_colour(label)
        if metric in history and history[metric].notna().any():
            hover = (f"<b>{label}</b><br>epoch %{{customdata[0]}} (%{{customdata[1]}})<br>"
                     f"{metric} %{{y:.4g}}<extra></extra>")
            custom = history[["epoch", "phase"]].to_numpy()
            if smoothing > 0:
                figure.add_trace(go.Scatter(x=history[x_column], y=history[metric], mode="lines",
                                            line={"color": colour, "width": 1}, opacity=0.3, showlegend=False,
                                            customdata=custom, hovertemplate=hover, name=f"{label} raw"),
                                 row=1, col=1)
            figure.add_trace(go.Scatter(x=history[x_column], y=smooth(history[metric], smoothing),
                                        mode="lines+markers", marker={"size": 4}, line={"color": colour},
                                        name=label, showlegend=True, customdata=custom, hovertemplate=hover),
                             row=1, col=1)
        for first, last in adversarial_blocks(history):
            x0, x1 = _span(history, first, last, x)
            if strip:
                shapes.append({"type": "rect", "xref": "x2", "yref": "y2", "x0": x0, "x1": x1, "y0": index - 0.4,
                               "y1": index + 0.4, "fillcolor": colour, "opacity": 0.7, "line": {"width": 0}})
            else:
                shapes.append(_band(x0, x1))
    if strip:
        labels = list(histories)
        figure.update_yaxes(tickvals=list(range(len(labels))), ticktext=labels, range=[-0.6, len(labels) - 0.4],
                            showgrid=False, row=2, col=1, title_text="adversarial")
    figure.update_yaxes(title_text=metric, type="log" if log_y else "linear", row=1, col=1)
    figure.update_xaxes(title_text="minutes" if x == "time" else "epoch", row=2 if strip else 1, col=1)
    if x == "epoch":
        figure.update_xaxes(**whole_epochs(max(map(len, histories.values()), default=0)))
    figure.update_layout(shapes=shapes, height=height + (40 * len(histories) if strip else 0),
                         margin={"l": 10, "r": 10, "t": 60, "b": 10}, hovermode="closest", legend=LEGEND,
                         title={"text": metric + ("" if strip else "  (shaded: adversarial epochs)"),
                                "font": {"size": 14}, "x": 0, "y": 0.98, "yanchor": "top"})
    return figure


def whole_epochs(epochs: int) -> dict:
    """Epoch-axis settings with ticks on whole epochs only (plotly puts ticks at 0.5 on short runs)."""
    return {"dtick": 1, "tick0": 1} if epochs <= 12 else {"tickformat": "d"}


def _band(x0: float, x1: float) -> dict:
    """A shaded band over the whole plot height behind the lines."""
    return {"type": "rect", "xref": "x", "yref": "paper", "x0": x0, "x1": x1, "y0": 0, "y1": 1,
            "fillcolor": SHADE, "line": {"width": 0}, "layer": "below"}


def run_figure(history: pd.DataFrame, columns: list[str], title: str, height: int = 260) -> go.Figure:
    """Several metrics of one run against epochs, adversarial epochs shaded (the live view); a GAN
    run's history has no phases, so nothing is shaded."""
    phased = "phase" in history
    figure = go.Figure()
    for column in columns:
        if column in history and history[column].notna().any():
            figure.add_scatter(x=history["epoch"], y=history[column], name=column, mode="lines+markers",
                               customdata=history[["phase"]].to_numpy() if phased else None,
                               hovertemplate=f"epoch %{{x}}{' (%{customdata[0]})' if phased else ''}<br>"
                                             f"{column} %{{y:.4g}}<extra></extra>")
    blocks = adversarial_blocks(history) if phased else []
    figure.update_layout(shapes=[_band(*_span(history, first, last, "epoch")) for first, last in blocks],
                         height=height, margin={"l": 10, "r": 10, "t": 60, "b": 10}, xaxis_title="epoch",
                         legend=LEGEND, title={"text": title + ("  (shaded: adversarial epochs)" if phased else ""),
                                               "font": {"size": 14}, "x": 0, "y": 0.98, "yanchor": "top"})
    figure.update_xaxes(**whole_epochs(len(history)))
    return figure
