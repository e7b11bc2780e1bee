"""Interpret: what one model draws and sees: class activations, traversals, explanations, ARA."""

import pandas as pd
import streamlit as st

from advcore.evaluation import profile, robustness
from advcore.interpret import alignment, video
from advcore.storage import data, files, images, preprocess
from app import image_input, jobs, model_widgets, state
from app.evaluate.evaluation_views import progress, status_of
from app.interpret import interpret_views

POLL_SECONDS = 1

st.title("Interpret")
entry = model_widgets.choose_model()
model = model_widgets.loaded(entry)
names, dataset = entry.class_names, entry.card.get("dataset")
judge = interpret_views.judge(dataset)
if judge is None:
    st.caption("No perceptual-alignment judge for this dataset: the judge's scores are left out.")

activations_tab, traversal_tab, ara_tab = st.tabs(["Class activations", "Traversal and explanations", "ARA"])

with activations_tab:
    st.caption("Gradient ascent on each class logit: a robust model paints its class, a standard one noise.")
    settings, start, classes, seed = interpret_views.activation_controls(names)
    if start == "mean" and dataset is None:
        st.info("A mean-image start needs the model's dataset, which is not known: start from noise.")
    elif not classes:
        st.info("Choose at least one class.")
    elif st.toggle("Draw", value=True, key="act-run", help="off: change several settings, then switch on"):
        try:
            result = interpret_views.activations(entry, model, settings, start, classes, seed)
        except data.DatasetError as error:  # a mean-image start needs the training set
            st.error(f"The {dataset} training set is not available here ({error}): start from noise.")
        else:
            interpret_views.show_activations(result, names, judge, entry.label)

with traversal_tab:
    image = image_input.choose_image(entry)
    if image is not None:
        x = preprocess.prepare(image.pixels, tuple(entry.card["input_shape"]),
                               image_input.preprocessing(image, entry))
        prediction = int(robustness.predict_logits(model, x[None]).argmax())
        label = image.label if image.label is not None else prediction
        st.markdown(f"The model says **{names[prediction]}**" + (f"; true class **{names[label]}**"
                                                                 if image.label is not None else ""))
        st.subheader("Class traversal")
        chosen = interpret_views.traversal_controls(names, label)
        if chosen is not None:
            settings, target = chosen
            result, mp4 = interpret_views.traversal(entry, model, x, target, settings, image.digest)
            left, right = st.columns([1, 1])
            left.video(mp4, loop=True, width=320)
            final = int(result.logits[-1, 0].argmax())
            right.markdown(f"Last frame: classified **{names[final]}** "
                           f"(L2 distance {float(((result.images[0] - x) ** 2).sum() ** 0.5):.2f})")
            if judge is not None:
                right.markdown("Judge on the last frame: " + interpret_views.score_line(
                    alignment.score(judge, result.images, [target])))
            right.plotly_chart(interpret_views.logit_figure(result, names, "Target logit"), key="trav-logits")
            a, b = right.columns(2)
            a.download_button("Video (MP4)", mp4, "traversal.mp4", "video/mp4", on_click="ignore", key="dl-mp4")
            if b.button("Make a GIF", key="make-gif"):
                frames, fps = video.paced(video.traversal_frames(result, names))
                b.download_button("GIF", images.encode_gif(frames, 1 / fps),
                                  "traversal.gif", "image/gif", on_click="ignore", key="dl-gif")
        st.subheader("Adversarial explanations")
        st.caption("Woods et al.: the evidence for each class the model finds inside an RMSE budget rho. "
                   "Captions: the class's confidence on the input -> on its explanation.")
        a, b, c = st.columns(3)
        rho = a.number_input("rho (RMSE)", 0.001, 1.0, 0.1, format="%.3f", key="expl-rho")
        steps = b.number_input("Steps", 1, 1000, 35, key="expl-steps")
        overshoot = c.number_input("Overshoot", 1.0, 50.0, 5.0, key="expl-overshoot")
        explained = interpret_views.explanation(entry, model, x, label, float(rho), int(steps), float(overshoot),
                                                image.digest)
        interpret_views.explanation_grid(explained, names)
        folder = files.safe_name(f"{image.name}-{names[label]}")
        st.download_button("Explanations (zip, seed 004's file names)",
                           interpret_views.explanation_zip(explained, names, folder), f"{folder}.zip",
                           "application/zip", on_click="ignore", key="dl-expl")

with ara_tab:
    st.caption("Accuracy-robustness area (Woods et al.): per test image the smallest RMSE perturbation that "
               "misclassifies it (Attack) or pushes the true class to 1/K (BTR); ARA is the area of the "
               "accuracy-vs-RMSE curve above 1/K. It runs in the background as part of the model's profile "
               "(also the Compare page's), saved once per model file.")
    if dataset is None:
        st.info("ARA needs the model's test set, and this model's dataset is not known.")
        st.stop()
    a, b, c, d = st.columns(4)
    count = a.number_input("Test images", 10, 10000, 1000, step=100, key="ara-count")
    ara_steps = b.number_input("Steps", 10, 2000, 450, key="ara-steps")
    ara_eps = c.number_input("Total step length", 0.1, 100.0, 20.0, key="ara-eps")
    momentum = d.number_input("Momentum", 0.0, 0.99, 0.9, key="ara-momentum")
    settings = profile.ProfileSettings(count=int(count), ara_steps=int(ara_steps), ara_eps=float(ara_eps),
                                       ara_momentum=float(momentum), traversals=min(20, int(count)))
    folder = interpret_views.profile_folder(entry, settings)
    saved = interpret_views.saved_profile(folder)
    if saved is None:
        job = jobs.profile_job(folder, state.root())
        live = job is not None and status_of(job)["status"] in ("queued", "running", "stopping")
        if live:
            st.session_state["polled_evaluation"] = job.id
            st.fragment(progress, run_every=POLL_SECONDS)(job)
        elif st.button("Compute ARA (in the background)", key="ara-run"):
            jobs.submit_profile(entry.path, dataset, settings.to_dict(), folder, state.root(), f"profile-{entry.label}")
            st.rerun()
        else:
            if job is not None:
                st.caption(f"The last try {status_of(job)['status']}.")
            st.stop()
    else:
        summary = saved.figures["ara"]
        st.dataframe(pd.DataFrame([{"accuracy": summary["accuracy"], "Attack ARA": summary["attack_ara"],
                                    "BTR ARA": summary["btr_ara"], "images": summary["images"]}]), hide_index=True)
        st.plotly_chart(interpret_views.ara_figure({entry.label: saved.ara}, len(names)), key="ara-curve")
        st.download_button("Per-image minimal perturbations (CSV)", saved.ara.to_csv(index=False), "ara.csv", "text/csv",
                           on_click="ignore", key="dl-ara")
