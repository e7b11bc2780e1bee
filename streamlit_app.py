"""AdvLab dashboard: the navigation over the pages. `python -m app.server` serves it (see app/server.py)."""

import streamlit as st

from app import device, registry, state
from app.navigation import PAGES

HOME = """
# AdvLab

Train and probe adversarially robust image classifiers.

- **Train**: launch a run (vanilla, adversarial, clean + adversarial, or an interleaved schedule
  of vanilla and adversarial epochs), watch it live, stop it. Runs train in their own process and
  keep going when you close the page.
- **History**: overlay training histories with the adversarial epochs shaded, compare runs, import
  the notebook's history CSVs.
- **Playground**: upload a photo (or pick a sample or a test image), see exactly what the model
  sees, attack it (FGSM and its gradient scalings, PGD in Linf or L2, momentum, targeted) and watch
  the attack step by step; download the adversarial image.
- **Evaluate**: robust accuracy of several models under several attacks over eps grids, per class,
  with gradient-masking checks; it runs in the background and survives closing the page.
- **Interpret**: what one model draws and sees: maximal class activations, class-traversal videos,
  adversarial explanations (Woods et al.) and the accuracy-robustness area (ARA), with the judge's
  perceptual-alignment score.
- **Compare**: standard vs robust models side by side: robustness curves, ARA, activation grids,
  traversal videos and explanations of the same image, and one table of all the figures.
- **Unrestricted adversarial examples**: train a class-conditional GAN on the Train page, then on the
  Playground's "Unrestricted (GAN)" tab generate images of a class and move them through the GAN's
  latent space until the classifier is fooled while they still look like the class.
- **Augmentation study**: train one recipe with no augmentation, FGSM, GAN samples and unrestricted
  examples, and compare clean, robust and GAN accuracies in one table backed by the four runs.

Everything also works from a terminal: `python -m advcore train | train-gan | study | attack | evaluate |
activations | traverse | explain | ara | profile --help`.
"""


# Page files are not named like their URLs: a pages/ folder also makes Streamlit route
# /<file name> to the file itself, bypassing this navigation (see app/server.py).
PAGE = {url: st.Page(path, title=title, url_path=url) for url, (path, title) in PAGES.items()}


def home() -> None:
    st.markdown(HOME)
    st.page_link(PAGE["train"], label="Start training")
    st.page_link(PAGE["history"], label="Compare histories")
    st.page_link(PAGE["playground"], label="Attack an image")
    st.page_link(PAGE["evaluate"], label="Measure robustness")
    st.page_link(PAGE["interpret"], label="See what a model draws")
    st.page_link(PAGE["compare"], label="Standard vs robust, side by side")
    st.page_link(PAGE["study"], label="Compare augmentations: none, FGSM, GAN samples, unrestricted")
    st.subheader("Ready-made models")
    st.caption("Trained on this project's CPU machine from the configs in `assets/models`; every figure of "
               "their cards is measured by `python assets/models/build.py card NAME`. Their training runs "
               "are on the History page as read-only examples.")
    for entry in registry.list_models(state.root()):
        card = registry.card_markdown(entry)
        if card:
            with st.expander(f"**{entry.label}** · {registry.card_caption(entry)}"):
                st.markdown(card)


st.set_page_config(page_title="AdvLab", layout="wide")
if problem := device.setup_server():
    st.error(f"{problem}. The dashboard's own work runs on the CPU.")
st.navigation([st.Page(home, title="Home", default=True), *PAGE.values()]).run()
