"""The Playground's unrestricted tab: generate images of a class, search the GAN's latent space until
the classifier is fooled while the GAN's own classifier still sees the class, show and download them."""

from __future__ import annotations

import numpy as np
import streamlit as st

from advcore.generative import acgan, unrestricted
from advcore.storage import images
from app import generators, registry, state

ANY_CLASS = "any other class (untargeted)"
SHOWN_SIZE = 112  # pixels on screen per image


def _gan_entry(entry: registry.ModelEntry) -> generators.GeneratorEntry | None:
    """The GAN the user picks among those of the model's dataset, or None after saying there is none."""
    dataset = entry.card.get("dataset")
    choices = [g for g in generators.list_generators(state.root()) if g.dataset == dataset]
    if not choices:
        st.info(f"No GAN for {dataset or 'this model'}'s data yet: train one on the Train page "
                "(What to train: a GAN).")
        return None
    return st.selectbox("GAN", choices, format_func=lambda g: g.label, key="gan-choice")


def _load_gan(picked: generators.GeneratorEntry, entry: registry.ModelEntry) -> acgan.ConditionalGan | None:
    """The picked GAN, or None after saying why it cannot serve this model."""
    try:
        gan = generators.load(picked)
    except acgan.GanError as error:
        st.error(str(error))
        return None
    shape = tuple(entry.card["input_shape"])
    if gan.image_shape != shape or gan.num_classes != len(entry.class_names):
        st.error(f"This GAN makes {gan.num_classes} classes of {gan.image_shape} images; the model takes "
                 f"{shape} images of {len(entry.class_names)} classes.")
        return None
    return gan


def _settings_form(names: list[str]) -> dict | None:
    with st.form("unrestricted-form", enter_to_submit=False):
        c1, c2, c3 = st.columns(3)
        source = c1.selectbox("Class to generate", names, key="u-source")
        target = c2.selectbox("Make the classifier say", [ANY_CLASS, *names], key="u-target")
        count = c3.number_input("Images", 1, 32, 8, key="u-count")
        c1, c2, c3 = st.columns(3)
        steps = c1.number_input("Latent steps", 1, 2000, 200, step=50, key="u-steps",
                                help="SGD steps on z (learning rate 0.1, annealed gradient noise); the seed used 500")
        noise = c2.number_input("Pixel noise bound (Linf)", 0.0, 0.5, 0.1, step=0.01, key="u-noise",
                                help="a small noise added to the generated image, also optimised; 0: latent only")
        seed = c3.number_input("Seed (new seed: new latents)", 0, 2**31 - 1, 0, key="u-seed")
        if not st.form_submit_button("Generate and attack", type="primary"):
            return None
    if target == source:
        st.error(f"The target class must differ from the generated class ({source}).")
        return None
    return {"source": names.index(source), "target": None if target == ANY_CLASS else names.index(target),
            "count": int(count), "steps": int(steps), "noise": float(noise), "seed": int(seed)}


def _show_pairs(result: unrestricted.UnrestrictedResult, names: list[str]) -> None:
    """Each starting sample above its example, with the classifier's and the GAN's verdicts."""
    factor = max(1, SHOWN_SIZE // result.clean.shape[1])
    per_row = 8
    for first in range(0, len(result.clean), per_row):
        for column, i in zip(st.columns(per_row), range(first, min(first + per_row, len(result.clean)))):
            column.image(images.enlarge(result.clean[i], factor),
                         caption=f"start · classifier: {names[result.clean_predictions[i]]}")
            verdict = "fooled" if result.success[i] else "not fooled"
            column.image(images.enlarge(result.adversarial[i], factor),
                         caption=f"{verdict} · classifier: {names[result.predictions[i]]} · "
                                 f"GAN sees: {names[result.aux_predictions[i]]}")


def unrestricted_tab(entry: registry.ModelEntry, model) -> None:
    names = entry.class_names
    st.caption("Unrestricted adversarial examples (seed 001): not a small perturbation of a given image, but a "
               "new image of the class, found by moving the GAN's latent z until the classifier is wrong while "
               "the GAN's auxiliary classifier still sees the class and z stays near its start.")
    picked = _gan_entry(entry)
    if picked is None:
        return
    asked = _settings_form(names)
    gan = _load_gan(picked, entry) if asked is not None else None  # the files are read only when asked
    if gan is not None:
        settings = unrestricted.LatentAttack(steps=asked["steps"], noise_bound=asked["noise"])
        with st.spinner(f"Searching the latent space ({asked['steps']} steps)..."):
            result = unrestricted.attack(gan, model, np.full(asked["count"], asked["source"]), target=asked["target"],
                                         settings=settings, seed=asked["seed"])
        st.session_state["unrestricted-result"] = (entry.key, asked, result)
    stored = st.session_state.get("unrestricted-result")
    if stored is None or stored[0] != entry.key:
        return
    _, asked, result = stored
    source = names[asked["source"]]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Fooled", f"{result.success_rate:.0%}",
              help=f"the classifier is wrong while the GAN's own classifier still sees a {source}")
    c2.metric("Classifier right on the GAN samples", f"{np.mean(result.clean_predictions == result.source):.0%}")
    c3.metric("Mean latent drift (RMS)", f"{np.mean(result.z_distance):.3f}")
    c4.metric("Seconds", f"{result.seconds:.1f}")
    st.markdown("**GAN samples** (the starting points, top) and **unrestricted adversarial examples** (below each)")
    _show_pairs(result, names)
    both = images.grid(np.concatenate([result.clean, result.adversarial]), columns=len(result.clean))
    c1, c2 = st.columns(2)
    c1.download_button("Download the images (PNG: samples above, examples below)", images.encode_png(both),
                       file_name=f"unrestricted-{source}.png", mime="image/png")
    c2.download_button("Download the examples (exact float32 .npy)", images.encode_npy(result.adversarial),
                       file_name=f"unrestricted-{source}.npy", mime="application/octet-stream")
