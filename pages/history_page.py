"""History: compare runs' training histories, with vanilla/adversarial epochs shaded."""

import streamlit as st

from advcore.storage.runs import list_runs
from app import charts, histories, registry, state
from app.text import literal

st.title("History")
runs = {histories.run_label(run): run for run in histories.classifier_runs(list_runs(state.root()))}
examples = {f"{run.id} (example run, read-only)": run for run in registry.example_runs()}
by_label = runs | examples
preselected = [label for label, run in runs.items() if run.id == st.query_params.get("run")]
default = preselected or list(runs)[:1] or [label for label in examples if label.startswith("interleaved")]
chosen = st.multiselect("Runs", list(by_label), default=default,
                        help="any number of runs, overlaid; the example runs trained the bundled models "
                             "(assets/models) and cannot be changed from here")
uploads = st.file_uploader("…or history CSV files (AdvLab's history.csv or the notebook's format)",
                           type=["csv"], accept_multiple_files=True, max_upload_size=histories.MAX_CSV_MEGABYTES)

loaded, problems = histories.from_runs({label: by_label[label] for label in chosen})
for upload in uploads or []:
    try:
        loaded[f"{upload.name} (uploaded)"] = histories.read_csv(upload.getvalue(), upload.name)
    except histories.HistoryFormatError as error:
        problems[upload.name] = str(error)
for label, problem in problems.items():
    st.warning(f"{literal(label)}: {literal(problem)}")
if not loaded:
    st.info("Pick a run with finished epochs, or upload a history CSV.")
    st.stop()

metrics = sorted({c for h in loaded.values() for c in h.columns
                  if c not in ("epoch", "phase", "warning", "seconds", "learning_rate", "eps")
                  and h[c].notna().any()})
default_metrics = [m for m in ("loss", "val_accuracy", "val_robust_accuracy") if m in metrics] or metrics[:1]
c1, c2, c3, c4 = st.columns([3, 2, 1, 1])
shown = c1.multiselect("Metrics", metrics, default=default_metrics)
smoothing = c2.slider("Smoothing", 0.0, 0.95, 0.0, 0.05, help="moving average; the raw line stays faint")
x_axis = c3.radio("x axis", ["epoch", "time"], horizontal=True)
log_y = c4.toggle("log scale")

for metric in shown:
    figure = charts.metric_figure(loaded, metric, x=x_axis, smoothing=smoothing, log_y=log_y)
    st.plotly_chart(figure, key=f"chart-{metric}")
    st.download_button(f"Download the {metric} chart (HTML)", figure.to_html(), file_name=f"{metric}.html",
                       mime="text/html", key=f"html-{metric}", on_click="ignore")

st.subheader("Summary")
st.dataframe(histories.summary_view(histories.summary(loaded)), hide_index=True,
             column_config={"run": st.column_config.TextColumn(width="large")})
# Files are made now, not on click: a file made on click is Streamlit's "deferred" download, whose link
# every rerun replaces and voids, so a click while the page reran (a slider just moved) got nothing. A
# file made now keeps its link while its content does not change.
st.download_button("Download the merged history (CSV)", histories.merged(loaded).to_csv(index=False),
                   file_name="histories.csv", mime="text/csv", on_click="ignore")
st.caption("Each chart's camera icon saves it as PNG.")
