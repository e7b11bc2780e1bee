"""Train: launch a run, watch it live, stop it; the table of all runs."""

import streamlit as st

from advcore.config import ADVERSARIAL, TrainConfig, phase
from advcore.runs import LIVE_STATUSES, RunError, list_runs
from app import charts, jobs, run_views, state
from app.device import training_device
from app.train_form import train_form

POLL_SECONDS = 2

st.title("Train")
left, right = st.columns([5, 6], gap="large")

with left:
    config = train_form(training_device())
    if config is not None:
        run = jobs.submit(config, state.root())
        state.select_run(run.id)
        st.success(f"Started run {run.id}")


@st.fragment(run_every=POLL_SECONDS)
def live_run() -> None:
    jobs.refresh(state.root())
    run = state.selected_run()
    if run is None:
        st.info("Start a run, or pick one in the table below.")
        return
    try:
        status, config, history = run.status(), TrainConfig.from_dict(run.config()), run.history()
    except (RunError, ValueError) as error:
        st.error(f"Run {run.id} is damaged: {error}")
        return
    where = run_views.progress(run, status, history)
    running = status["status"] in LIVE_STATUSES
    st.subheader(run.name())
    st.caption(f"{run.id} · {status.get('device', 'device not known yet')}")
    colour = {"finished": "green", "stopped": "orange", "failed": "red"}.get(status["status"], "blue")
    epoch_phase = phase(config, max(where["epoch"] - 1, 0))
    st.markdown(f"Status: :{colour}-badge[{status['status']}]"
                + (f" · epoch phase: :{'red' if epoch_phase == ADVERSARIAL else 'gray'}-badge[{epoch_phase}]"
                   if running else ""))
    c1, c2, c3 = st.columns(3)
    c1.metric("Epoch", f"{where['epoch']} / {where['total'] or '∞'}")
    c2.metric("Elapsed", run_views.duration(where["elapsed"]))
    c3.metric("ETA", run_views.duration(where["eta"]) if where["eta"] is not None else "-")
    if running:
        st.progress(where["within"], text=f"epoch {where['epoch']}: {where['within']:.0%}")
        if st.button("Stop", type="secondary", key="stop"):
            st.toast(f"run {jobs.stop(run)}")
    if status["status"] == "failed":
        st.error(status.get("error") or "the run failed")
        st.code(run.log_tail() or "(no log)", language=None)
    if len(history):
        st.plotly_chart(charts.run_figure(history, ["loss", "val_loss"], "loss"), key="live-loss")
        st.plotly_chart(charts.run_figure(history, ["accuracy", "val_accuracy", "val_robust_accuracy"],
                                          "accuracy"), key="live-accuracy")

with right:
    live_run()


@st.fragment(run_every=POLL_SECONDS * 3)
def all_runs() -> None:
    runs = list_runs(state.root())
    st.subheader(f"All runs ({len(runs)})")
    if not runs:
        st.caption(f"No runs yet in {state.root()}")
        return
    table = run_views.runs_table(runs)
    picked = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="single-row",
                          key="runs-table", column_config={
                              "last val acc": st.column_config.NumberColumn(format="percent"),
                              "best val acc": st.column_config.NumberColumn(format="percent"),
                              "best robust acc": st.column_config.NumberColumn(format="percent")})
    if picked.selection.rows:
        chosen = table.iloc[picked.selection.rows[0]]["id"]
        if chosen != st.query_params.get("run"):
            state.select_run(chosen)
            st.rerun()
    run = state.selected_run()
    if run is None:
        return
    with st.popover(f"Rename or delete {run.id}"):
        new_name = st.text_input("New name", value=run.name(), key="rename")
        if st.button("Rename", key="rename-button"):
            try:
                run.rename(new_name)
                st.rerun()
            except RunError as error:
                st.error(str(error))
        confirm = st.checkbox(f"Yes, delete {run.id} and its files", key="confirm-delete")
        if st.button("Delete", disabled=not confirm, key="delete-button"):
            try:
                jobs.delete(run)
                state.select_run(None)
                st.rerun()
            except RunError as error:
                st.error(str(error))


all_runs()
