"""AdvLab dashboard entry point: `streamlit run streamlit_app.py`."""

import streamlit as st

HOME = """
# AdvLab

Train and probe adversarially robust image classifiers.

- **Train** classifiers with adversarial examples inside the training step, mixed clean and
  adversarial batches, or interleaved vanilla/adversarial schedules.
- **Attack** images with FGSM and its gradient scalings, PGD in Linf and L2, targeted,
  momentum and random-restart attacks, and measure robustness over a test set.
- **See** what robust models gain: class activations, traversals, explanations.

The dashboard pages arrive step by step; everything already works from a terminal:

```
python -m advcore attack   --model MODEL.keras --eps 0.1 --out adv/
python -m advcore evaluate --model MODEL.keras --eps 0,0.05,0.1 --out eval/
```
"""


def home() -> None:
    st.markdown(HOME)


st.set_page_config(page_title="AdvLab", layout="wide")
st.navigation([st.Page(home, title="Home", default=True)]).run()
