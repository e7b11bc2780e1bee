"""One colour per model on every page and chart.

A model is a bundled model, a run or an uploaded file; pages name it in more than one way (the model
pickers say "pgd-linf (bundled)", History "pgd-linf (example run, read-only)"). Every known model gets
the next palette colour in one fixed order (bundled first, then runs oldest first, then uploads), so
no two share a colour while the palette lasts, a new run changes no older colour, and each of a
model's names maps to its one colour. A name of no known model (an uploaded history CSV) gets a
colour by hash.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from advcore.storage.runs import list_runs
from app import histories, registry, state

# 20 colours taken one by one from Plotly's qualitative palettes, each the farthest from those before it
# (no greys, none too light): any two lie at least 32 apart in CIELAB, where 2.3 is just noticeable;
# the 24 used before had two pinks 18.5 apart and two purples 17.
PALETTE = ("#636EFA", "#1CA71C", "#FB0D0D", "#19D3F3", "#8C564B", "#F2B701", "#FC1CBF", "#0D2A63", "#AA0DFE",
           "#1C8356", "#FF6692", "#750D86", "#2E91E5", "#DEA0FD", "#999933", "#FF7F0E", "#B82E2E", "#882255",
           "#1616A7", "#F8A19F")
REFRESH_SECONDS = 10  # how long a listing of the models is reused


def names_in_order(root: str) -> list[tuple[str, ...]]:
    """Every known model's names, one tuple per model, in the order colours are given."""
    models = [(f"{run.id} (bundled)", f"{run.id} (example run, read-only)") for run in registry.example_runs()]
    for run in reversed(list_runs(root)):
        models.append((histories.run_label(run), registry.run_entry_label(run)))
    models += [(entry.label,) for entry in registry.uploads()]
    return models


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False)
def _index_by_name(root: str) -> dict[str, int]:
    return {name: index for index, names in enumerate(names_in_order(root)) for name in names}


def colour(name: str) -> str:
    """The colour of the model a page names `name`."""
    index = _index_by_name(str(state.root())).get(name)
    if index is None:
        index = int(hashlib.md5(name.encode()).hexdigest(), 16)
    return PALETTE[index % len(PALETTE)]
