"""Choosing models on a page: the registry's entries, a `.keras` upload, and cached loading."""

from __future__ import annotations

import streamlit as st

from advcore import models
from advcore.storage import data
from app import registry, state

MODEL_UPLOAD_TYPES = ["keras"]


@st.cache_resource(max_entries=8, show_spinner="Loading the model...")
def _load(path: str, modified: float, logits: bool = True):
    return models.load(path, logits=logits)


def load_model(entry: registry.ModelEntry):
    """The entry's model, loaded once per file version and shared by every session; an upload whose
    card says so keeps its final softmax."""
    return _load(str(entry.path), entry.path.stat().st_mtime, not entry.card.get("keep_softmax", False))


@st.cache_resource(max_entries=2, show_spinner="Loading the test set...")
def test_split(dataset: str, input_shape: tuple) -> data.Split:
    """A dataset's test split, a folder's read at the model's input size (`input_shape`)."""
    return data.load(dataset, image_size=tuple(input_shape[:2]), splits=("test",)).test


@st.cache_resource(max_entries=1, show_spinner="Loading the training set...")
def train_split(dataset: str, input_shape: tuple) -> data.Split:
    return data.load(dataset, image_size=tuple(input_shape[:2]), splits=("train",)).train


def upload_model() -> None:
    """An expander to add a `.keras` file to the registry; shows why a file is refused."""
    with st.expander("Add a model: upload a Keras 3 `.keras` file"):
        st.caption("Loaded with `safe_mode=True`: a file with custom code (Lambda layers) is refused and "
                   "never run. A softmax output is used through its logits unless you keep it below; "
                   "evaluations always attack the logits.")
        keep_softmax = st.checkbox("Keep a final softmax (attack the probabilities: shows gradient masking)",
                                   key="model_upload_keep_softmax")
        uploaded = st.file_uploader("Model file", type=MODEL_UPLOAD_TYPES, key="model_upload",
                                    max_upload_size=registry.MAX_MODEL_BYTES // 2**20)
        if uploaded is None or st.session_state.get("model_upload_done") == uploaded.file_id:
            return
        try:
            entry = registry.save_upload(uploaded.getvalue(), uploaded.name, keep_softmax)
        except registry.RegistryError as error:
            st.error(f"Model not added: {error}")
            return
        st.session_state["model_upload_done"] = uploaded.file_id
        st.success(f"Added {entry.label}: input {tuple(entry.card['input_shape'])}, "
                   f"{len(entry.class_names)} classes, dataset guessed as {entry.card['dataset'] or 'unknown'}")
        if entry.card.get("warning"):
            st.warning(f"{entry.label}: {entry.card['warning']}")


def entries() -> dict[str, registry.ModelEntry]:
    return {entry.key: entry for entry in registry.list_models(state.root())}


def no_models_message() -> None:
    st.info("No models yet: train one on the Train page, or upload a `.keras` file above.")


def choose_model() -> registry.ModelEntry:
    """The upload expander and a model picker with the model's card; stops the page when there is no model."""
    upload_model()
    choices = entries()
    if not choices:
        no_models_message()
        st.stop()
    state.from_url("model", "model", choices)
    key = st.selectbox("Model", list(choices), format_func=lambda k: choices[k].label, key="model",
                       on_change=state.to_url, args=("model", "model"))
    st.caption(registry.card_caption(choices[key]))
    card = registry.card_markdown(choices[key])
    if card:
        with st.expander("Model card"):
            st.markdown(card)
    return choices[key]


def loaded(entry: registry.ModelEntry):
    """The entry's model, or a message on the page (and the page stops) when it cannot be loaded."""
    try:
        return load_model(entry)
    except (models.ModelError, OSError) as error:  # a file replaced or removed since it was registered
        st.error(f"Cannot load {entry.label}: {error}")
        st.stop()
