"""Evaluate: robustness of models over a test set, measured in the background."""

import streamlit as st

from app import device, jobs, model_widgets, state
from app.evaluate import evaluate_form, evaluation_views
from app.text import counted

POLL_SECONDS = 1

st.title("Evaluate")
model_widgets.upload_model()
jobs.ensure_worker(state.root())  # a worker that died or idled out is restarted for waiting jobs
evaluations = {job.id: job for job in jobs.list_evaluations(state.root())}
with st.expander("New evaluation", expanded=not evaluations):
    submitted = evaluate_form.evaluate_form(model_widgets.entries(), device.shards_offer(state.root()))
if submitted is not None:
    plan, name, shards = submitted
    job = jobs.submit_evaluation(plan, state.root(), name, shards)
    st.query_params["evaluation"] = job.id
    st.toast(f"Queued evaluation {job.id}: {counted(len(plan.cells()), 'cell')} on {counted(plan.count, 'image')}")
    evaluations = {job.id: job for job in jobs.list_evaluations(state.root())}
if not evaluations:
    st.info("No evaluations yet: choose models and attacks above, then Evaluate.")
    st.stop()
wanted = st.query_params.get("evaluation")
ids = list(evaluations)
chosen = st.selectbox("Evaluation", ids, index=ids.index(wanted) if wanted in ids else 0,
                      format_func=lambda i: f"{evaluations[i].name()} · {i}")
st.query_params["evaluation"] = chosen
job = evaluations[chosen]
live = evaluation_views.status_of(job)["status"] in ("queued", "running", "stopping")
st.session_state["polled_evaluation"] = job.id if live else None
content = evaluation_views.read_results(job)
watch = st.fragment(evaluation_views.progress, run_every=POLL_SECONDS if live else None)
watch(job, evaluation_views.cell_count(content))
evaluation_views.results(job, content)
