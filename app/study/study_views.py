"""The Augmentation study page's parts: the form that queues a study, and each study's table."""

from __future__ import annotations

import streamlit as st

from advcore.generative import study
from advcore.training.config import ConfigError, TrainConfig
from app import generators, jobs, state

PERCENT_COLUMNS = ("clean accuracy", "robust accuracy", "GAN-sample accuracy", "unrestricted accuracy")


def study_form() -> None:
    """Queues the four runs of a study when the form is sent with valid settings."""
    choices = generators.list_generators(state.root())
    if not choices:
        st.info("A study needs a trained GAN: train one on the Train page (What to train: a GAN).")
        return
    with st.form("study-form", enter_to_submit=False):
        c1, c2 = st.columns(2)
        name = c1.text_input("Study name", "study", max_chars=50)
        gan = c2.selectbox("GAN (also fixes the dataset)", choices, format_func=lambda g: g.label)
        c1, c2, c3, c4 = st.columns(4)
        train_size = c1.number_input("Training images (0 = all)", value=10_000, step=1000)
        epochs = c2.number_input("Epochs", value=5)
        architecture = c3.selectbox("Architecture", ["small_cnn", "madry_cnn", "preact_resnet20"])
        seed = c4.number_input("Seed", value=0)
        c1, c2, c3, c4 = st.columns(4)
        weight = c1.number_input("lambda (weight of the augmented share)", value=0.3, step=0.05)
        fraction = c2.number_input("Augmented share of each batch", value=0.5, step=0.05)
        eps = c3.number_input("eps (FGSM's largest, and the PGD check's)", value=0.1, step=0.01, format="%.3f")
        latent_steps = c4.number_input("Latent steps per batch (unrestricted arm)", value=20)
        checks = st.number_input("GAN-check images per epoch", value=500, step=100,
                                 help="each epoch: accuracy on these GAN samples, and on unrestricted examples "
                                      "searched from them (100 latent steps) against the current weights")
        problem = st.empty()
        if not st.form_submit_button("Queue the four runs", type="primary"):
            return
    try:
        base = TrainConfig.from_dict({
            "name": name, "seed": seed, "generator": str(gan.folder),
            "data": {"dataset": gan.dataset, "train_size": train_size or None},
            "model": {"architecture": architecture}, "schedule": {"epochs": epochs},
            "attack": {"eps": eps, "steps": latent_steps}, "mix": {"weight": weight, "fraction": fraction},
            "validation": {"gan_size": checks}})
        record = study.create(base, str(gan.folder), state.root())
    except (ConfigError, ValueError) as error:
        problem.error(str(error), icon="⚠️")
        return
    jobs.ensure_scheduler(state.root())
    st.success(f"Queued study {record['id']}: its four runs train one after another (see the Train page).")


def study_table(record: dict) -> None:
    """The study's four arms, read from their runs: status, epochs and last-epoch accuracies."""
    table = study.table(record, state.root())
    table.insert(2, "open", ["train?run=" + run_id if run_id else None for run_id in table["run"]])
    st.markdown(f"**{record.get('name', record['id'])}** · `{record['id']}` · GAN `{record.get('generator')}`")
    st.dataframe(table, hide_index=True, key=f"study-{record['id']}",
                 column_order=[column for column in table.columns if column != "run"], column_config={
        column: st.column_config.NumberColumn(format="percent") for column in PERCENT_COLUMNS} | {
        "open": st.column_config.LinkColumn("open", display_text="on the Train page")})
