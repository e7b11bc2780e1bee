"""Train: launch a run, watch it live, stop it; the table of all runs."""

import streamlit as st

from advcore.storage.runs import LIVE_STATUSES, RunError, list_runs
from advcore.training.config import ADVERSARIAL, GanConfig, TrainConfig, config_kind, phase
from app import charts, jobs, state
from app.device import training_device
from app.train import run_views
from app.train.gan_form import gan_form
from app.train.train_form import train_form

STATUS_SECONDS, CHARTS_SECONDS, TABLE_SECONDS = 3, 15, 10  # each poll costs the server a script rerun
RUNS_TABLE = "runs-table"  # the runs table's key; "-ids" holds its rows' run ids, "-picked" a fresh tick

st.title("Train")
left, right = st.columns([5, 6], gap="large")

with left:
    what = st.radio("What to train", ["A classifier", "A GAN"], horizontal=True, key="what-to-train",
                    help="a GAN (class-conditional) makes the images of GAN augmentation and of the "
                         "Playground's unrestricted adversarial examples")
    config = train_form(training_device()) if what == "A classifier" else gan_form(training_device())
    if config is not None:
        run = jobs.submit(config, state.root())
        state.select_run(run.id)
        st.session_state.pop(RUNS_TABLE, None)  # a ticked row would now point at another run: untick it
        st.success(f"Queued run {run.id}: it starts as soon as a slot is free ({jobs.max_concurrent()} "
                   "run(s) train at a time), whether or not this page stays open")


def _load(run):
    """The run's status, config (classifier or GAN) and history, or None after showing why they cannot be read."""
    try:
        content = run.training_config()
        config = (GanConfig if config_kind(content) == "gan" else TrainConfig).from_dict(content, checked=False)
        return run.status(), config, run.history()
    except (RunError, ValueError) as error:
        st.error(f"Run {run.id} is damaged: {error}")
        return None


def live_status(run) -> None:
    """Status, epoch, progress and ETA: cheap file reads, polled often."""
    loaded = _load(run)
    if loaded is None:
        return
    status, config, history = loaded
    where = run_views.progress(run, status, history)
    running = status["status"] in LIVE_STATUSES
    colour = {"finished": "green", "stopped": "orange", "failed": "red"}.get(status["status"], "blue")
    epoch_phase = phase(config, max(where["epoch"] - 1, 0)) if isinstance(config, TrainConfig) else None
    st.markdown(f"Status: :{colour}-badge[{status['status']}]"
                + (f" · epoch phase: :{'red' if epoch_phase == ADVERSARIAL else 'gray'}-badge[{epoch_phase}]"
                   if running and epoch_phase else "") + f" · {status.get('device', 'device not known yet')}")
    c1, c2, c3 = st.columns(3)
    c1.metric("Epoch", f"{where['epoch']} / {where['total'] or '∞'}")
    c2.metric("Elapsed", run_views.duration(where["elapsed"]))
    c3.metric("ETA", run_views.duration(where["eta"]) if where["eta"] is not None else "-")
    if running:
        st.progress(where["within"], text=f"epoch {where['epoch']}: {where['within']:.0%}")
        if st.button("Stop", type="secondary", key="stop"):
            st.toast(f"run {jobs.stop(run)}")
    elif st.session_state.get("polled_live") == run.id:
        st.session_state["polled_live"] = None
        st.rerun()  # the run just ended: redraw the page once, without polling
    if status.get("best_epoch"):
        st.caption(f"model.keras is epoch {status['best_epoch']}, the one of highest validation robust accuracy "
                   f"({status['best_val_robust_accuracy']:.1%}); every epoch's checkpoint and history row stay")
    if status["status"] == "failed":
        st.error(status.get("error") or "the run failed")
        st.code(run.log_tail() or "(no log)", language=None)


def live_charts(run) -> None:
    """Loss and accuracy curves: they change once an epoch, so they are polled less often."""
    try:
        history = run.history()
    except RunError:
        return  # the status view above says why
    if not len(history):
        return
    if "critic_loss" in history:  # a GAN run: its losses, its class accuracy and its latest samples
        st.plotly_chart(charts.run_figure(history, ["critic_loss", "generator_loss", "wasserstein",
                                                    "gradient_penalty"], "GAN losses"), key="live-gan-loss")
        st.plotly_chart(charts.run_figure(history, ["aux_accuracy_real", "aux_accuracy_fake"],
                                          "auxiliary classifier accuracy"), key="live-gan-aux")
        grid = run.samples_path()
        if grid.is_file():
            st.image(grid.read_bytes(), caption=f"samples after epoch {int(history['epoch'].iloc[-1])}: one row "
                                                "per class, the same latents in each column", width=480)
        return
    st.plotly_chart(charts.run_figure(history, ["loss", "val_loss"], "loss"), key="live-loss")
    st.plotly_chart(charts.run_figure(history, ["accuracy", "val_accuracy", "val_robust_accuracy",
                                                "val_gan_accuracy", "val_unrestricted_accuracy"],
                                      "accuracy"), key="live-accuracy")
    if "kl" in history and history["kl"].notna().any():
        st.plotly_chart(charts.run_figure(history, ["kl"], "KL(f(x) || f(x')), TRADES / MART"), key="live-kl")
    if "psi" in history and history["psi"].notna().any():
        st.plotly_chart(charts.run_figure(history, ["psi"], "Lipschitz penalty weight psi"), key="live-psi")


with right:
    selected = state.selected_run()
    if selected is None:
        st.info("Start a run, or pick one in the table below.")
    else:
        st.subheader(selected.name())
        st.caption(selected.id)
        live = run_views.is_live(selected)
        st.session_state["polled_live"] = selected.id if live else None
        # only a live run is polled; a finished one is drawn once
        st.fragment(live_status, run_every=STATUS_SECONDS if live else None)(selected)
        st.fragment(live_charts, run_every=CHARTS_SECONDS if live else None)(selected)


def _pick_run() -> None:
    """Selects the run of the row the user ticked (only a tick by the user calls this: a new run shifting
    the rows under a tick selects nothing)."""
    rows = st.session_state[RUNS_TABLE].selection.rows
    if rows:
        state.select_run(st.session_state[RUNS_TABLE + "-ids"][rows[0]])
        st.session_state[RUNS_TABLE + "-picked"] = True


@st.fragment(run_every=TABLE_SECONDS)
def all_runs() -> None:
    jobs.ensure_scheduler(state.root())  # it starts queued runs, with or without this page open
    runs = list_runs(state.root())
    st.subheader(f"All runs ({len(runs)})")
    if not runs:
        st.caption(f"No runs yet in {state.root()}")
        return
    table = run_views.runs_table(runs)
    st.session_state[RUNS_TABLE + "-ids"] = list(table["id"])
    st.dataframe(table, hide_index=True, on_select=_pick_run, selection_mode="single-row",
                 key=RUNS_TABLE, column_config={
                     "last val acc": st.column_config.NumberColumn(format="percent"),
                     "best val acc": st.column_config.NumberColumn(format="percent"),
                     "best robust acc": st.column_config.NumberColumn(format="percent")})
    if st.session_state.pop(RUNS_TABLE + "-picked", False):
        st.rerun()  # the whole page: the selected run's view is outside this fragment
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
