"""Playground: attack one image live and see what the attack did."""

import numpy as np
import streamlit as st

from advcore.attacks import trace
from advcore.evaluation import robustness
from advcore.storage import preprocess
from app import attack_form, image_input, model_widgets
from app.playground import attack_views, certificate_views, unrestricted_views
from app.playground.attack_views import shown

st.title("Attack playground")
entry = model_widgets.choose_model()
names = entry.class_names
shape = tuple(entry.card["input_shape"])
model = model_widgets.loaded(entry)

pixel_tab, unrestricted_tab = st.tabs(["Attack an image", "Unrestricted (GAN)"])
with unrestricted_tab:  # drawn first: the image tab may stop the script
    unrestricted_views.unrestricted_tab(entry, model)
with pixel_tab:
    image = image_input.choose_image(entry)
    if image is None:
        st.stop()
    options = image_input.preprocessing(image, entry)
    x = preprocess.prepare(image.pixels, shape, options)
    prediction = int(robustness.predict_logits(model, x[None]).argmax())

    left, right = st.columns([1, 2])
    left.image(shown(x), caption=f"what the model sees: {shape[1]}x{shape[0]}x{shape[2]}, values "
               f"{x.min():.2f}..{x.max():.2f}; predicted {names[prediction]}")
    with right:
        if image.label is None:
            named = st.selectbox("True class", ["unknown", *names], key=f"label-{image.digest}",
                                 help="name it to learn whether the attack fools the model; unknown: an untargeted "
                                      "attack moves the image away from the model's prediction")
            label = None if named == "unknown" else names.index(named)
        else:
            label = image.label
            st.markdown(f"True class: **{names[label]}**")
        with st.expander("The exact tensor"):
            st.code(f"shape (1, {', '.join(map(str, shape))}), float32, min {x.min():.4f}, max {x.max():.4f}, "
                    f"mean {x.mean():.4f}")
            if shape[2] == 1:
                st.dataframe(np.round(x[..., 0], 3), height=200)

    st.subheader("Attack")
    choice = attack_form.attack_controls(entry.card.get("dataset"), names, shape,
                                         avoid=prediction if label is None else label)
    if choice is None:
        st.stop()
    st.caption(choice.description)
    outcome = trace.trace(model, x[None], [prediction if label is None else label], choice.spec,
                          target=choice.target, seed=choice.seed, first_index=image.index)
    attack_views.show_result(model, x, outcome, choice, names, label, image, options)
    certificate_views.certificate(model, entry, x, outcome.result.x_adv[0], names, image.index)
