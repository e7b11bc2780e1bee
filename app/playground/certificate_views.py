"""The Playground's certificate: the smoothed classifier's class and certified L2 radius for the
current image, set beside the L2 size of the current adversarial perturbation, which can never beat it."""

from __future__ import annotations

import numpy as np
import streamlit as st

from advcore.certification import smoothing
from app.registry import ModelEntry

MODES = {"quick": "quick: n = 10,000", "paper": "paper: n = 100,000"}


SIGMA_RANGE = (0.01, 2.0)


def card_sigma(card: dict) -> float:
    """The sigma a model card records (a smoothed model's), or 0.25; a card is read from a runs folder,
    so anything but a number in range is ignored."""
    sigma = card.get("sigma")
    number = isinstance(sigma, (int, float)) and not isinstance(sigma, bool)
    return float(sigma) if number and SIGMA_RANGE[0] <= sigma <= SIGMA_RANGE[1] else 0.25


@st.cache_data(max_entries=64, show_spinner="Drawing the noise...")
def _smoothed(_model, model_key: tuple, x: np.ndarray, x_adv: np.ndarray, index: int, sigma: float,
              mode: str) -> tuple[int, float, float, int]:
    """(CERTIFY's class, its radius, pA's lower bound) on x, and PREDICT's class on x_adv: both seeded
    by the image's test-set index, as an evaluation would."""
    setting = smoothing.Smoothing.of_mode(mode, sigma)
    found = smoothing.certify(_model, x[None], setting, indices=[index])
    on_adversarial = smoothing.predict(_model, x_adv[None], setting, indices=[index])
    return int(found.prediction[0]), float(found.radius[0]), float(found.p_lower[0]), int(on_adversarial[0])


def verdict(names: list[str], certified: int, radius: float, p_lower: float, adversarial: int,
            distance: float) -> tuple[str, str, str]:
    """(badge colour, badge, sentence) for an attack of L2 size `distance` against the certificate."""
    after = "abstains" if adversarial == smoothing.ABSTAIN else f"predicts {names[adversarial]}"
    if certified == smoothing.ABSTAIN:
        return ("gray", "no certificate", f"the smoothed classifier abstains here (the lower bound on pA is "
                f"{p_lower:.3f}, below 1/2); on the adversarial image it {after}")
    if distance > radius:
        return ("orange", "outside the certificate",
                f"the perturbation (L2 {distance:.3f}) is larger than the certified radius {radius:.3f}, so the "
                f"certificate says nothing about it; on the adversarial image the smoothed classifier {after}")
    if adversarial in (certified, smoothing.ABSTAIN):
        return ("green", "inside the certificate",
                f"the perturbation (L2 {distance:.3f}) lies within the certified radius {radius:.3f}: it cannot "
                f"change the smoothed class {names[certified]}, and on the adversarial image the smoothed "
                f"classifier {after}")
    return ("red", "certificate beaten",
            f"the perturbation (L2 {distance:.3f}) lies within the certified radius {radius:.3f}, yet the smoothed "
            f"classifier {after}: this happens with probability at most alpha = 0.001 per image")


def certificate(model, entry: ModelEntry, x: np.ndarray, x_adv: np.ndarray, names: list[str], index: int) -> None:
    st.subheader("Certificate")
    if not st.toggle("Certify this image (randomized smoothing)", key="certify.on",
                     help="the smoothed classifier, the model's most likely class under Gaussian noise, with its "
                          "certified L2 radius (Cohen et al. 2019): no perturbation inside it can change that class"):
        return
    c1, c2 = st.columns(2)
    sigma = c1.number_input("Noise sigma", SIGMA_RANGE[0], SIGMA_RANGE[1], card_sigma(entry.card), 0.05, format="%.2f",
                            key="certify.sigma", help="certify a model at the sigma it was trained with noise at")
    mode = c2.radio("Draws", list(MODES), format_func=MODES.get, horizontal=True, key="certify.mode")
    key = (str(entry.path), entry.path.stat().st_mtime)
    certified, radius, p_lower, adversarial = _smoothed(model, key, x, x_adv, index, float(sigma), mode)
    distance = float(np.sqrt(np.sum(np.square(x_adv - x))))
    colour, badge, sentence = verdict(names, certified, radius, p_lower, adversarial, distance)
    m1, m2, m3 = st.columns(3)
    m1.metric("Smoothed class", "abstains" if certified == smoothing.ABSTAIN else names[certified])
    m2.metric("Certified L2 radius", f"{radius:.3f}", help=f"pA is at least {p_lower:.4f} (alpha 0.001)")
    m3.metric("Attack's L2 size", f"{distance:.3f}")
    st.markdown(f":{colour}-badge[{badge}] {sentence}.")
    st.caption("The attack was made against the base model; the smoothed model is the base model under Gaussian "
               "noise of this sigma, so a perturbation that fools the base model often leaves it unmoved.")
