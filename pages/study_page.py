"""Augmentation study: one recipe trained with none / FGSM / GAN samples / unrestricted examples."""

import streamlit as st

from advcore.generative import study
from app import jobs, state
from app.study import study_views

TABLE_SECONDS = 10

st.title("Augmentation study")
st.caption("The comparison of seed 001, reproducible: the same classifier recipe trained four ways, "
           "with no augmentation, with least-likely-class FGSM examples (eps drawn per batch), with GAN "
           "samples of the batch's classes, and with unrestricted adversarial examples against the current "
           "weights, the augmented share weighted by lambda. Each arm is an ordinary run; the table reads "
           "their last epochs. The same from a terminal: `python -m advcore study --generator GAN_FOLDER ...`.")
with st.expander("Start a study", expanded=not study.list_studies(state.root())):
    study_views.study_form()


@st.fragment(run_every=TABLE_SECONDS)
def studies() -> None:
    jobs.ensure_scheduler(state.root())  # it starts the next queued arm, with or without this page open
    records = study.list_studies(state.root())
    if not records:
        st.caption("No studies yet.")
    for record in records:
        study_views.study_table(record)


studies()
