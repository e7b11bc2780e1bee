"""Compare: two or more models (typically standard vs robust) side by side on the same inputs."""

import pandas as pd
import streamlit as st

from advcore import models
from advcore.evaluation import profile
from advcore.interpret import gradient_ascent
from advcore.storage import data
from app import attack_charts, jobs, model_widgets, pictures, state
from app.evaluate.evaluation_views import progress_text, shard_lines, status_of
from app.text import literal
from app.interpret import interpret_views

POLL_SECONDS = 2
VIDEO_PIXELS = 320  # the 28x28 frames are encoded 8x (224 px) plus their caption strip

st.title("Compare models")
entries = model_widgets.entries()
bundled = [k for k, e in entries.items() if e.source == "bundled"]  # the standard model, then the most robust
chosen = st.multiselect("Models (two or more, of one dataset)", list(entries), default=bundled[:2],
                        format_func=lambda k: entries[k].label, key="compare-models")
picked = [entries[k] for k in chosen]
datasets = {e.card.get("dataset") for e in picked}
if len(picked) < 2:
    st.info("Choose at least two models.")
    st.stop()
if len(datasets) != 1 or None in datasets:
    st.error("These models are not all of one known dataset: compare models of the same dataset.")
    st.stop()
dataset = datasets.pop()
names = picked[0].class_names
count = st.select_slider("Test images for accuracy, robustness and ARA", [50, 100, 200, 500, 1000, 2000], 1000,
                         key="compare-count", help="50 for a first look; the figures' sampling error shrinks "
                         "as 1/sqrt(images), and the time grows with them")
settings = profile.ProfileSettings(count=count, traversals=min(20, count))


def gather() -> tuple[dict, list, list]:
    """Each model's saved profile, the jobs computing the others, and the models with neither."""
    found, waiting, missing = {}, [], []
    for entry in picked:
        folder = interpret_views.profile_folder(entry, settings)
        saved = interpret_views.saved_profile(folder)
        if saved is not None:
            found[entry.label] = saved
            continue
        job = jobs.profile_job(folder, state.root())
        if job is not None and status_of(job)["status"] in ("queued", "running", "stopping"):
            waiting.append((entry.label, job))
        else:
            missing.append((entry, folder, job))
    return found, waiting, missing


def pending(waiting) -> None:
    """Each computing profile's bar, and on a cluster one per shard."""
    for label, job in waiting:
        where = job.progress()
        fraction, text = progress_text(status_of(job)["status"], where)
        st.progress(fraction, text=literal(f"{label}: {text}"))
        for shard_fraction, shard_text in shard_lines(where):
            st.progress(shard_fraction, text=shard_text)


found, waiting, missing = gather()
if missing:
    failed = [f"{entry.label} ({status_of(job)['status']})" for entry, _, job in missing if job is not None]
    if failed:
        st.warning(f"The last profile of {', '.join(failed)} did not finish.")
    if st.button(f"Compute the profiles of {', '.join(e.label for e, _, _ in missing)} in the background",
                 key="compare-run", type="primary"):
        for entry, folder, _ in missing:
            jobs.submit_profile(entry.path, dataset, settings.to_dict(), folder, state.root(), f"profile-{entry.label}")
        st.rerun()
if waiting:
    st.caption("Profiles run in the background and are saved per model file: the next visit is instant. On a "
               "CPU a robust model takes about two minutes per 100 test images (AutoAttack attacks every image "
               "it has not broken yet); a standard one much less.")

    @st.fragment(run_every=POLL_SECONDS)
    def watch():
        pending(waiting)
        if all(status_of(job)["status"] not in ("queued", "running", "stopping") for _, job in waiting):
            st.rerun()

    watch()

if found:
    rows = []
    for label, saved in found.items():
        figures = saved.figures
        row = {"model": label, "clean accuracy": figures["clean_accuracy"],
               f"AutoAttack Linf {settings.autoattack_eps:g}": figures["autoattack"]["robust_accuracy"]}
        row |= {f"PGD-{settings.pgd_steps} Linf {p['eps']:g}": p["robust_accuracy"] for p in figures["curve"]
                if p["eps"] > 0}
        row |= {"Attack ARA": figures["ara"]["attack_ara"], "BTR ARA": figures["ara"]["btr_ara"]}
        for what, score in figures.get("alignment", {}).items():
            row[f"judge accuracy: {what.replace('_', ' ')}"] = score["judge_accuracy"]
            row[f"TV/pixel: {what.replace('_', ' ')}"] = score["total_variation"]
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    percent = {c: st.column_config.NumberColumn(format="percent") for c in table.columns
               if "accuracy" in c or c.startswith(("PGD", "AutoAttack"))}
    st.dataframe(table, column_config=percent | {c: st.column_config.NumberColumn(format="%.4f")
                                                 for c in table.columns if "ARA" in c or "TV" in c})
    st.caption("Judge accuracy: how often a separately trained robust classifier (another architecture and seed) "
               "names the class a model's own maximal-activation or traversal image is meant to show; on real "
               "test images it sets the ceiling. Lower total variation means smoother, less noise-like images.")
    cells = pd.DataFrame([{"model": label, "attack": f"PGD-{settings.pgd_steps}", "norm": "linf", **point}
                          for label, saved in found.items() for point in saved.figures["curve"]])
    left, right = st.columns(2)
    left.plotly_chart(attack_charts.robustness_figure(cells), key="compare-curves")
    right.plotly_chart(interpret_views.ara_figure({label: saved.ara for label, saved in found.items()}, len(names)),
                       key="compare-ara")
    st.subheader("Maximal class activations")
    for column, (label, saved) in zip(st.columns(len(found)), found.items()):
        with column:
            st.markdown(f"**{literal(label)}**")
            pictures.show_grid(saved.pictures["activations"], names, columns=5)

st.subheader("The same image, side by side")
loaded = {}
for entry in picked:
    try:
        loaded[entry.label] = (entry, model_widgets.load_model(entry))
    except (models.ModelError, OSError) as error:
        st.error(f"Cannot load {literal(entry.label)}: {literal(error)}")
try:
    split = model_widgets.test_split(dataset, tuple(picked[0].card["input_shape"]))
except data.DatasetError as error:
    st.error(f"The {dataset} test set is not available here: {error}")
    st.stop()
a, b, c = st.columns(3)
index = int(a.number_input(f"Test image (0..{len(split) - 1})", 0, len(split) - 1, 0, key="compare-index"))
label = int(split.y[index])
target = names.index(b.selectbox("Traverse to", names, index=(label + 1) % len(names), key="compare-target"))
c.markdown(f"True class: **{names[label]}**")
x = split.x[index]
columns = st.columns(len(loaded))
for column, (title, (entry, model)) in zip(columns, loaded.items()):
    with column:
        st.markdown(f"**{title}**")
        result, mp4 = interpret_views.traversal(entry, model, x, target, gradient_ascent.TRAVERSAL,
                                                f"test-{index}")
        st.video(mp4, loop=True, autoplay=True, muted=True, width=VIDEO_PIXELS)
        st.caption(f"last frame classified {names[int(result.logits[-1, 0].argmax())]}")
        explained = interpret_views.explanation(entry, model, x, label, 0.1, 35, 5.0, f"test-{index}")
        interpret_views.explanation_grid(explained, names, columns=4)
