"""Interpret and Compare pages' pieces: controls, remembered results, image grids, videos and downloads."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from advcore import models
from advcore.evaluation import profile
from advcore.evaluation.worker import profiles_root
from advcore.interpret import alignment, explain, gradient_ascent, video
from advcore.storage import images
from app import model_widgets, state
from app.colours import colour as model_colour
from app.pictures import cell, show_grid
from app.registry import ModelEntry

REMEMBERED = 16  # results kept per browser session, newest last


def remembered(key: tuple, compute):
    """`compute()` once per key and browser session: reruns (any widget click) show the result at once."""
    store = st.session_state.setdefault("interpret_results", {})
    if key not in store:
        store[key] = compute()
        while len(store) > REMEMBERED:
            store.pop(next(iter(store)))
    return store[key]


def model_key(entry: ModelEntry) -> tuple:
    return entry.key, entry.path.stat().st_mtime


@st.cache_resource(max_entries=2, show_spinner="Loading the judge...")
def _judge(path: str):
    return models.load(path)


def judge(dataset: str | None):
    path = alignment.judge_path(dataset)
    return _judge(str(path)) if path else None


def progress_reporter(total: int, what: str):
    """A progress bar and a preview slot; the callback `ascend` calls with each batch of frames."""
    bar, preview = st.progress(0.0, text=what), st.empty()

    def report(step: int, latest: np.ndarray) -> None:
        bar.progress(min(1.0, step / total), text=f"{what}: step {step}/{total}")
        preview.image(cell(images.grid(latest)), caption=f"step {step}")

    def clear() -> None:
        bar.empty()
        preview.empty()

    return report, clear


def score_line(score: dict) -> str:
    return (f"judge accuracy {score['judge_accuracy']:.0%} · judge confidence {score['judge_confidence']:.2f} · "
            f"total variation {score['total_variation']:.3f} per pixel")


# ----------------------------------------------------------------------------- class activations

def activation_controls(class_names: list[str]) -> tuple[gradient_ascent.Ascent, str, list[int], int]:
    left, right = st.columns(2)
    preset = left.selectbox("Preset", list(gradient_ascent.ACTIVATION_PRESETS), key="act-preset",
                            help="advlab: tuned for a robust model; seed / seed-better: seed 000's settings")
    ascent, start = gradient_ascent.ACTIVATION_PRESETS[preset]
    start = right.radio("Start from", ["noise", "mean"], index=["noise", "mean"].index(start), horizontal=True,
                        key=f"act-start-{preset}", help="uniform noise, or the blurred mean training image")
    chosen = st.multiselect("Classes", class_names, default=class_names, key="act-classes")
    with st.expander("Ascent settings"):
        a, b, c = st.columns(3)
        steps = a.number_input("Steps", 1, 5000, ascent.steps, key=f"act-steps-{preset}")
        step_size = b.number_input("Step size", 0.0001, 1.0, ascent.step_size, format="%.4f",
                                   key=f"act-size-{preset}")
        seed = c.number_input("Seed", 0, 2**31 - 1, 0, key="act-seed")
        jitter = a.number_input("Jitter every (0: off)", 0, 1000, ascent.jitter_every, key=f"act-jitter-{preset}")
        blur = b.number_input("Blur every (0: off)", 0, 1000, ascent.blur_every, key=f"act-blur-{preset}")
        record = c.number_input("Frame every", 1, 1000, ascent.record_every, key=f"act-record-{preset}")
        l2 = a.number_input("L2 penalty", 0.0, 100.0, ascent.l2, key=f"act-l2-{preset}")
        tv = b.number_input("Total variation", 0.0, 100.0, ascent.tv, key=f"act-tv-{preset}")
    settings = ascent.replace(steps=int(steps), step_size=float(step_size), jitter_every=int(jitter),
                              blur_every=int(blur), record_every=int(record), l2=float(l2), tv=float(tv))
    return settings, start, [class_names.index(name) for name in chosen], int(seed)


def activations(entry: ModelEntry, model, settings: gradient_ascent.Ascent, start: str, classes: list[int],
                seed: int) -> gradient_ascent.Ascension:
    def compute():
        report, clear = progress_reporter(settings.steps, "Climbing the class logits")
        train = model_widgets.train_split(entry.card["dataset"], tuple(entry.card["input_shape"])).x[:5000] if start == "mean" else None
        result = gradient_ascent.maximal_activations(model, classes, settings, start=start, images=train, seed=seed,
                                                     on_frames=report)
        clear()
        return result

    return remembered(("activations", model_key(entry), settings, start, tuple(classes), seed), compute)


def show_activations(result: gradient_ascent.Ascension, names: list[str], judge_model, model_name: str) -> None:
    """The class images, the judge's score of them, the logits per step, and the downloads."""
    show_grid(result.images, [names[c] for c in result.targets])
    if judge_model is not None:
        st.markdown("**Perceptual alignment** (the judge, a separately trained robust model, rates these images): "
                    + score_line(alignment.score(judge_model, result.images, result.targets)))
    st.plotly_chart(logit_figure(result, names, "Target logit per step"), key="act-logits")
    _activation_downloads(result, model_name)


def _activation_downloads(result: gradient_ascent.Ascension, name: str) -> None:
    a, b, c = st.columns(3)
    a.download_button("Grid (PNG)", images.encode_png(images.grid(result.images)), f"{name}-activations.png",
                      "image/png", on_click="ignore", key="dl-act-png")
    b.download_button("Steps (GIF)", images.encode_gif([cell(images.grid(f)) / 255.0 for f in result.frames]),
                      f"{name}-activations.gif", "image/gif", on_click="ignore", key="dl-act-gif")
    c.download_button("Exact values (.npy)", images.encode_npy(result.images), f"{name}-activations.npy",
                      "application/octet-stream", on_click="ignore", key="dl-act-npy")


def logit_figure(result: gradient_ascent.Ascension, names: list[str], title: str) -> go.Figure:
    figure = go.Figure()
    for i, target in enumerate(result.targets):
        figure.add_trace(go.Scatter(x=result.steps, y=result.target_logits[:, i], mode="lines", name=names[target]))
    figure.update_layout(title=title, xaxis_title="step", yaxis_title="target logit", height=320,
                         margin={"l": 10, "r": 10, "t": 50, "b": 30})
    return figure


# ----------------------------------------------------------------------------- traversal

def traversal_controls(class_names: list[str], label: int) -> tuple[gradient_ascent.Ascent, int] | None:
    a, b, c, d = st.columns(4)
    default_target = (label + 1) % len(class_names)
    target = class_names.index(a.selectbox("Target class", class_names, index=default_target, key="trav-target"))
    steps = b.number_input("Steps", 1, 2000, gradient_ascent.TRAVERSAL.steps, key="trav-steps")
    size = c.number_input("Sign step", 0.0001, 0.5, gradient_ascent.TRAVERSAL.step_size, format="%.4f", key="trav-size")
    every = d.number_input("Frame every", 1, 100, 1, key="trav-every")
    budget = a.radio("Budget", ["none", "l2", "linf"], horizontal=True, key="trav-budget",
                     help="seed 003 had none; a budget keeps the image near the original")
    eps = b.number_input("eps", 0.0, 30.0, 3.0 if budget == "l2" else 0.3, key=f"trav-eps-{budget}",
                         disabled=budget == "none")
    try:
        settings = gradient_ascent.TRAVERSAL.replace(steps=int(steps), step_size=float(size), record_every=int(every),
                                                     norm=None if budget == "none" else budget,
                                                     eps=float(eps) if budget != "none" else 0.0)
    except ValueError as error:
        st.error(str(error))
        return None
    return settings, target


def traversal(entry: ModelEntry, model, image: np.ndarray, target: int, settings: gradient_ascent.Ascent,
              image_key: str) -> tuple[gradient_ascent.Ascension, bytes]:
    def compute():
        report, clear = progress_reporter(settings.steps, "Traversing")
        result = gradient_ascent.traverse(model, image, target, settings, on_frames=report)
        clear()
        with st.spinner("Encoding the video..."):
            mp4 = video.encode_mp4(*video.paced(video.traversal_frames(result, entry.class_names)))
        return result, mp4

    return remembered(("traversal", model_key(entry), image_key, target, settings), compute)


# ----------------------------------------------------------------------------- explanations

def explanation(entry: ModelEntry, model, image: np.ndarray, label: int, rho: float, steps: int,
                overshoot: float, image_key: str) -> explain.Explanation:
    return remembered(("explain", model_key(entry), image_key, label, rho, steps, overshoot),
                      lambda: explain.explain(model, image, label, rho=rho, steps=steps, overshoot=overshoot))


def explanation_grid(result: explain.Explanation, names: list[str], columns: int = 7) -> None:
    pictures = np.concatenate([result.image[None], result.explanations])
    titles = {"real": "true class", "second": "runner-up"}
    captions = [f"input: {names[result.label]}"] + [
        f"{titles.get(role, 'class')} {names[t]}: {result.confidence[t]:.2f} -> {p:.2f}"
        for role, t, p in zip(result.roles, result.targets, result.after)]
    show_grid(pictures, captions, columns)


def explanation_zip(result: explain.Explanation, names: list[str], folder: str) -> bytes:
    """Seed 004's folder of PNGs (`_input.png`, `_real_was_0.123.png`, ...) as a zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{folder}/_input.png", images.encode_png(result.image))
        for name, picture in zip(result.file_names(names), result.explanations):
            archive.writestr(f"{folder}/{name}", images.encode_png(picture))
    return buffer.getvalue()


# ----------------------------------------------------------------------------- profiles (background)

def profile_folder(entry: ModelEntry, settings: profile.ProfileSettings) -> Path:
    return _profile_folder(str(entry.path), entry.path.stat().st_mtime, settings, str(profiles_root(state.root())))


def saved_profile(folder: Path) -> profile.Saved | None:
    """The profile saved in `folder`, read once per version of its files (reruns come often)."""
    marker = folder / profile.PROFILE_FILE
    return _saved_profile(str(folder), marker.stat().st_mtime if marker.exists() else None)


@st.cache_data(max_entries=32, show_spinner=False)
def _saved_profile(folder: str, modified: float | None) -> profile.Saved | None:
    return profile.load(folder) if modified is not None else None


@st.cache_data(max_entries=64, show_spinner=False)
def _profile_folder(path: str, modified: float, settings: profile.ProfileSettings, root: str) -> Path:
    return profile.folder_for(root, path, settings)  # hashing the file once per version


def ara_figure(tables: dict, num_classes: int) -> go.Figure:
    """Accuracy (solid) and better-than-random rate (dotted) against the RMSE budget, per model's ARA table."""
    figure = go.Figure()
    for label, table in tables.items():
        points = explain.curve(table["attack_rmse"], table["btr_rmse"])
        for column, dash, what in (("attack_accuracy", "solid", "accuracy"), ("btr_accuracy", "dot", "BTR")):
            figure.add_trace(go.Scatter(x=points["rmse"], y=points[column], mode="lines", name=f"{label}: {what}",
                                        line={"dash": dash, "shape": "hv", "color": model_colour(label)}))
    figure.add_hline(y=1 / num_classes, line_dash="dash", line_color="grey", annotation_text="1/K")
    figure.update_layout(title="Accuracy vs RMSE budget (ARA: the area above 1/K)", xaxis_title="RMSE",
                         yaxis={"tickformat": ".0%", "range": [0, 1.02]}, height=380,
                         margin={"l": 10, "r": 10, "t": 50, "b": 30})
    return figure
