"""What the Playground shows after an attack: images side by side, probabilities, the path, downloads."""

from __future__ import annotations

import numpy as np
import streamlit as st

from advcore.attacks.trace import Trace
from advcore.evaluation import robustness
from advcore.storage import images, preprocess
from app import attack_charts
from app.attack_form import AttackChoice
from app.image_input import InputImage

DISPLAY_PIXELS = 196  # images are enlarged (nearest neighbour) to about this size


def amplified(delta: np.ndarray) -> tuple[np.ndarray, float]:
    """The perturbation made visible: grey is 0, scaled so the largest change reaches black or white."""
    largest = float(np.abs(delta).max())
    scale = 0.5 / largest if largest > 0 else 1.0
    return np.clip(0.5 + delta * scale, 0, 1), scale


def shown(image: np.ndarray) -> np.ndarray:
    return images.to_uint8(images.enlarge(image, max(1, DISPLAY_PIXELS // image.shape[0])))


def steps_gif(path: dict, x: np.ndarray) -> bytes:
    """Each iterate next to its amplified perturbation (one common scale), step by step."""
    deltas = path["iterates"] - x
    _, scale = amplified(deltas)
    gap = np.ones((x.shape[0], 1, x.shape[2]), np.float32)
    frames = [np.concatenate([iterate, gap, np.clip(0.5 + d * scale, 0, 1)], axis=1)
              for iterate, d in zip(path["iterates"], deltas)]
    factor = max(1, DISPLAY_PIXELS // x.shape[0])
    return images.encode_gif([images.enlarge(frame, factor) for frame in frames])


def verdict(result, targeted: bool, names: list[str], label: int | None) -> tuple[str, str, str]:
    """(badge colour, badge, sentence) of one attacked image, never claiming more than is known: with no
    true class the attack can only change the prediction, and an image the model already got wrong (or
    a target it already predicts) is no success of the attack."""
    before, after = names[result.clean_predictions[0]], names[result.predictions[0]]
    success = bool(result.success[0])
    if targeted:
        target = names[result.labels[0]]
        if result.clean_predictions[0] == result.labels[0]:
            return "gray", "nothing to do", f"the model already predicts the target {target}"
        return ("green" if success else "orange", "reached" if success else "not reached",
                f"{before} → {after}: " + ("reached" if success else "did not reach") + f" the target {target}")
    if label is None:
        return ("green" if success else "orange", "prediction changed" if success else "prediction unchanged",
                f"{before} → {after} (true class unknown: name it above to judge whether the model is fooled)")
    if result.clean_predictions[0] != label:
        return "gray", "already misclassified", f"the model saw this {names[label]} as {before} before the attack"
    return ("green" if success else "orange", "fooled" if success else "not fooled",
            f"{before} → {after}: " + ("fooled" if success else "not fooled"))


def objective_text(value: float) -> str:
    """Three decimals, without the "-0.000" of a tiny negative value."""
    text = f"{value:.3f}"
    return "0.000" if float(text) == 0 else text


def show_result(model, x: np.ndarray, trace: Trace, choice: AttackChoice, names: list[str], label: int | None,
                image: InputImage, options: preprocess.Preprocessing) -> None:
    """`x` is the (H, W, C) model input `prepare` made of `image` with `options`; the trace attacked it as
    a batch of one; `label` is the true class, None when unknown (the attack then moves the image away
    from the model's prediction)."""
    result = trace.result
    x_adv = result.x_adv[0]
    colour, badge, sentence = verdict(result, choice.spec.targeted, names, label)
    st.markdown(f":{colour}-badge[{badge}] **{sentence}**")
    delta_view, scale = amplified(x_adv - x)
    c1, c2, c3 = st.columns(3)
    c1.image(shown(x), caption=f"original: {names[result.clean_predictions[0]]}")
    c2.image(shown(delta_view), caption=f"perturbation x{scale:.1f} (grey = no change)")
    c3.image(shown(x_adv), caption=f"adversarial: {names[result.predictions[0]]}")
    m1, m2, m3 = st.columns(3)
    m1.metric("Linf distance", f"{result.linf[0]:.4f}", help=f"{result.linf[0] * 255:.2f}/255")
    m2.metric("L2 distance", f"{result.l2[0]:.4f}")
    m3.metric("Attack objective", objective_text(result.loss[0]), help=choice.spec.loss + " objective, higher is better "
              "for the attacker")
    clean_p, adv_p = attack_charts.softmax(trace.clean_logits[0]), attack_charts.softmax(result.logits[0])
    st.plotly_chart(attack_charts.probability_bars(names, clean_p, adv_p, always=[int(result.labels[0])]),
                    key="probabilities")
    path = trace.chosen_path(0)
    if choice.spec.steps > 1 and "objective" in path:
        lines = {f"{names[label]} (true)": label} if label is not None else {}
        if choice.spec.targeted:
            lines[f"{names[result.labels[0]]} (target)"] = int(result.labels[0])
        lines.setdefault(f"{names[result.predictions[0]]} (final)", int(result.predictions[0]))
        restart = trace.chosen[0][0]
        chart, animation = st.columns([3, 2])
        chart.plotly_chart(attack_charts.step_figure(path["objective"], attack_charts.softmax(path["logits"]),
                                                     lines, f"{choice.spec.loss} objective, restart {restart + 1}"),
                           key="steps")
        animation.image(steps_gif(path, x), caption="the iterates and their perturbation, step by step")
    _downloads(model, x, x_adv, names, int(result.predictions[0]), bool(result.success[0]), image, options)


def _downloads(model, x: np.ndarray, x_adv: np.ndarray, names: list[str], prediction: int, succeeded: bool,
               image: InputImage, options: preprocess.Preprocessing) -> None:
    """The exact model input (PNG and .npy), and the user's image at its own size with the perturbation
    carried back, each with the model's verdict on what the file holds."""
    png = images.encode_png(x_adv)
    quantised = images.to_uint8(x_adv).reshape(x_adv.shape).astype(np.float32) / 255
    png_prediction = int(robustness.predict_logits(model, quantised[None]).argmax())
    stem = image.name.rsplit(".", 1)[0].replace(" ", "-")
    st.markdown("**Downloads**")
    d1, d2, d3 = st.columns(3)
    d1.download_button(f"Model input, PNG ({x.shape[1]}x{x.shape[0]})", png, f"{stem}-adversarial.png",
                       "image/png", key="download_png", on_click="ignore")
    d2.download_button("Model input, exact float32 array (.npy)", images.encode_npy(x_adv),
                       f"{stem}-adversarial.npy", "application/octet-stream", key="download_npy", on_click="ignore")
    own = preprocess.carried_back(image.pixels, x_adv - x, x.shape, options)
    own_prediction = int(robustness.predict_logits(
        model, preprocess.prepare(images.to_uint8(own).reshape(own.shape).astype(np.float32) / 255, x.shape,
                                  options)[None]).argmax())
    height, width = own.shape[:2]
    d3.download_button(f"Your image, perturbed, PNG ({width}x{height})", images.encode_png(own),
                       f"{stem}-adversarial-{width}x{height}.png", "image/png", key="download_own", on_click="ignore")
    st.caption("The model-input PNG rounds every value to 8 bits (up to 0.5/255 of change); the .npy keeps the "
               "exact floats. " + ("The rounded PNG is classified the same as the exact input. " if png_prediction
                                   == prediction else "Rounding to the PNG changes the model's prediction: use the "
                                   ".npy. ")
               + f"Your image carries the perturbation resized to its {width}x{height} pixels (uploads over "
               f"{images.WORKING_SIDE} pixels are first shrunk to that); prepared for the model again, it is "
               f"classified **{names[own_prediction]}**" + _own_verdict(names, own_prediction, prediction, succeeded))


def _own_verdict(names: list[str], own: int, attacked: int, succeeded: bool) -> str:
    """How the user's resized image compares with the attacked input: the same class, or another one,
    which weakens the attack only where the attack had succeeded."""
    if own == attacked:
        return ", as the attacked input."
    if succeeded:
        return f", not {names[attacked]}: resizing weakened the attack."
    return f", not {names[attacked]} as the attacked input (the attack itself had not reached its goal)."
