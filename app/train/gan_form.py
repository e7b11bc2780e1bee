"""The Train page's GAN form: every field of a GAN config, validated before the run is queued."""

from __future__ import annotations

import streamlit as st

from advcore.storage.data import DATASETS
from advcore.training.config import GanConfig, problems


def gan_form(device: str) -> GanConfig | None:
    """Draws the form; returns a validated config when Start was pressed and every field is valid."""
    st.caption(f"An AC-GAN trained as WGAN-GP (seed 001): its generator makes images of a chosen class, its "
               f"critic's auxiliary classifier names them; both serve the Playground's unrestricted tab and "
               f"GAN augmentation. Training will run on: **{device}**")
    with st.form("train-gan", enter_to_submit=False):
        c1, c2, c3 = st.columns(3)
        name = c1.text_input("Run name", "gan", max_chars=60)
        dataset = c2.selectbox("Dataset", DATASETS)
        train_size = c3.number_input("Training images (0 = all)", value=0, step=1000)
        c1, c2, c3 = st.columns(3)
        architecture = c1.selectbox("Architecture", ["auto", "dcgan", "resnet"],
                                    help="auto: the small DCGAN pair for 28x28 images, the ResNet pair for 32x32")
        width = c2.number_input("Width", value=1)
        z_dim = c3.number_input("Latent size (z)", value=128)
        c1, c2, c3 = st.columns(3)
        epochs = c1.number_input("Epochs (passes of the critic over the data)", value=20)
        until_stopped = c2.checkbox("Until stopped")
        batch_size = c3.number_input("Batch size", value=64)
        c1, c2, c3, c4 = st.columns(4)
        critic_steps = c1.number_input("Critic steps per generator step", value=5)
        penalty = c2.number_input("Gradient penalty weight", value=10.0)
        aux_critic = c3.number_input("Class-loss weight, critic", value=1.0, step=0.1)
        aux_generator = c4.number_input("Class-loss weight, generator", value=0.1, step=0.1,
                                        help="the seed used 0.1; 1.0 makes the class show sooner")
        c1, c2 = st.columns(2)
        rate = c1.number_input("Learning rate (Adam, betas 0 / 0.9)", value=2e-4, step=1e-4, format="%.5f")
        seed = c2.number_input("Seed", value=0)
        problem = st.empty()
        submitted = st.form_submit_button("Start GAN training", type="primary")
    if not submitted:
        return None
    content = {"name": name, "data": {"dataset": dataset, "train_size": train_size or None},
               "architecture": architecture, "width": width, "z_dim": z_dim,
               "epochs": None if until_stopped else epochs, "batch_size": batch_size, "critic_steps": critic_steps,
               "gradient_penalty": penalty, "aux_weight_critic": aux_critic,
               "aux_weight_generator": aux_generator, "learning_rate": rate, "seed": seed}
    found = problems(GanConfig, content)
    with problem.container():
        for message in found:  # every problem at once
            st.error(message, icon="⚠️")
    return None if found else GanConfig.from_dict(content)
