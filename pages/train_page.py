"""Train: a new run's form across the page; the runs, the selected one live, and what can be done with it."""

import streamlit as st

from advcore.storage.runs import RunError, list_runs
from advcore.training.config import ADVERSARIAL, ConfigError, TrainConfig, config_kind, phase
from app import charts, jobs, state
from app.text import counted, literal
from app.device import cluster_choice, executor_text, training_device
from app.train import folder_preview, run_views, train_form
from app.train.gan_form import gan_form

LIVE_SECONDS, IDLE_SECONDS = 3, 10  # each poll costs the server a script rerun; idle: new runs, the scheduler
RUNS_TABLE = "runs-table"  # the runs table's key; "-ids" holds its rows' run ids, "-picked" a fresh tick
VIEW, NEW_RUN, RUNS = "train-view", "New run", "Runs"
SWITCH, FLASH = "train-view-next", "train-flash"  # a view to show on the next run; a message to show once
POLLED_LIVE = "train-polled-live"  # whether a run was live when the page last chose its polling pace

st.title("Train")
if SWITCH in st.session_state:  # set before the view control exists (its state is read-only after)
    st.session_state[VIEW] = st.session_state.pop(SWITCH)
st.session_state.setdefault(VIEW, RUNS if state.selected_run() else NEW_RUN)


def _queued(config) -> None:
    run = jobs.submit(config, state.root())
    state.select_run(run.id)
    st.session_state.pop(RUNS_TABLE, None)  # a ticked row would now point at another run: untick it
    st.session_state[SWITCH] = RUNS
    address = cluster_choice()[0]
    where = (f"the scheduler submits it to the Ray cluster at {address}" if address else
             f"it starts as soon as a slot is free ({counted(jobs.max_concurrent(), 'run')} at a time)")
    st.session_state[FLASH] = f"Queued run {run.id}: {where}, whether or not this page stays open"


def new_run() -> None:
    what = st.radio("What to train", ["A classifier", "A GAN"], horizontal=True, key="what-to-train",
                    help="a GAN (class-conditional) makes the images of GAN augmentation and of the "
                         "Playground's unrestricted adversarial examples")
    if what == "A classifier":
        train_form.train_form(training_device(), _queued)
        return
    train_form.set_aside()
    config = gan_form(training_device())
    if config is not None:
        _queued(config)
        st.rerun()


def header(shot: run_views.Snapshot) -> None:
    """Status, epochs done, wall time and ETA, and (while it trains) the epoch in progress and Stop."""
    status, config = shot.status, shot.config
    where = run_views.progress(shot)
    classifier = config_kind(config) == "classifier"
    epoch_phase = phase(TrainConfig.from_dict(config, checked=False), where["done"]) if classifier else None
    colour = {"finished": "green", "stopped": "orange", "failed": "red"}.get(status["status"], "blue")
    st.markdown(f"Status: :{colour}-badge[{status['status']}]"
                + (f" · epoch phase: :{'red' if epoch_phase == ADVERSARIAL else 'gray'}-badge[{epoch_phase}]"
                   if shot.live and epoch_phase else "")
                + f" · {literal(status.get('device', 'device not known yet'))}"
                + (f" · {run_views.devices_text(status, config)}" if "gpus" in status else ""))
    c1, c2, c3 = st.columns(3)
    c1.metric("Epochs done", f"{where['done']} / {where['total'] or '∞'}")
    c2.metric("Wall time", run_views.duration(where["elapsed"]))
    c3.metric("ETA", run_views.duration(where["eta"]) if where["eta"] is not None else "-")
    if shot.live:
        st.progress(where["within"], text=f"epoch {where['done'] + 1}: {where['within']:.0%}")
        if st.button("Stop", type="secondary", key="stop"):
            try:
                st.toast(literal(jobs.stop(shot.run)))
            except RunError as error:
                st.error(literal(error))
    if status.get("best_epoch"):
        st.caption(f"model.keras is epoch {status['best_epoch']}, the one of highest validation robust accuracy "
                   f"({status['best_val_robust_accuracy']:.1%}); every epoch's checkpoint and history row stay")
    if status["status"] == "failed":
        st.error(literal(status.get("error") or "the run failed"))
        st.code(run_views.readable_log(shot.run.log_tail()) or "(no log)", language=None, wrap_lines=True)


def actions(shot: run_views.Snapshot) -> None:
    """Resume, extend or clone a run that no process trains."""
    where = run_views.progress(shot)
    unfinished = where["total"] is None or where["done"] < where["total"]
    interleaved = shot.config.get("schedule", {}).get("kind") == "interleaved"
    unit = "cycle" if interleaved else "epoch"
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1], vertical_alignment="bottom")
    try:
        if shot.status["status"] in ("stopped", "failed") and unfinished and c1.button("Resume", key="resume"):
            jobs.resume(shot.run, root=state.root())
            st.rerun(scope="app")
        if where["total"] is not None:
            more = c2.number_input(f"More {unit}s", min_value=1, value=10, step=1, key="extend-by")
            if c3.button(f"Extend by {counted(more, unit)}", key="extend"):
                jobs.resume(shot.run, more, root=state.root())
                st.rerun(scope="app")
    except (RunError, ConfigError) as error:
        st.error(literal(error))
    if config_kind(shot.config) == "classifier" and c4.button("Clone into the form", key="clone",
                                                                help="a new run's form with this run's config"):
        train_form.clone(shot.config)
        st.session_state[SWITCH] = NEW_RUN
        st.rerun(scope="app")


def charts_of(shot: run_views.Snapshot) -> None:
    """Loss and accuracy curves (or a GAN's losses and samples) from the snapshot's history."""
    history = shot.history
    if not len(history):
        return
    if "critic_loss" in history:  # a GAN run: its losses, its class accuracy and its latest samples
        left, right = st.columns(2)
        left.plotly_chart(charts.run_figure(history, ["critic_loss", "generator_loss", "wasserstein",
                                                      "gradient_penalty"], "GAN losses"), key="live-gan-loss")
        right.plotly_chart(charts.run_figure(history, ["aux_accuracy_real", "aux_accuracy_fake"],
                                             "auxiliary classifier accuracy"), key="live-gan-aux")
        grid = shot.run.latest_samples()
        if grid is not None:
            st.image(grid, caption=f"samples after epoch {int(history['epoch'].iloc[-1])}: one row "
                                                "per class, the same latents in each column", width=480)
        return
    figures = [(["loss", "val_loss"], "loss", "live-loss"),
               (["accuracy", "val_accuracy", "val_robust_accuracy", "val_gan_accuracy", "val_unrestricted_accuracy"],
                "accuracy", "live-accuracy")]
    if "kl" in history and history["kl"].notna().any():
        figures.append((["kl"], "KL(f(x) || f(x')), TRADES / MART", "live-kl"))
    if "consistency" in history and history["consistency"].notna().any():
        figures.append((["consistency"], "consistency of the noisy copies (lambda KL + eta entropy)",
                        "live-consistency"))
    if "psi" in history and history["psi"].notna().any():
        figures.append((["psi"], "Lipschitz penalty weight psi", "live-psi"))
    for place, (columns, title, key) in zip(st.columns(2) * 2, figures):
        place.plotly_chart(charts.run_figure(history, columns, title), key=key)


def selected_view(shot: run_views.Snapshot | None) -> None:
    if shot is None:
        st.info("Pick a run in the table below, or start one under *New run*.")
        return
    st.subheader(literal(shot.run.name()))
    st.caption(shot.run.id)
    if shot.problem:
        st.error(f"Run {shot.run.id} is damaged: {literal(shot.problem.removeprefix(f'run {shot.run.id}: '))}")
        return
    header(shot)
    skipped_files(shot.run)
    if not shot.live:
        actions(shot)
    charts_of(shot)


def skipped_files(run) -> None:
    """The image folder's files the run skipped, per split, with the reasons."""
    try:
        skipped = run.skipped()
    except RunError as error:
        st.warning(literal(error))
        return
    if skipped:
        label, folder, table = run_views.skipped_summary(skipped)
        with st.expander(label):
            folder_preview.skipped_table(folder, table)


def _pick_run() -> None:
    """Selects the run of the row the user ticked (only a tick by the user calls this: a new run shifting
    the rows under a tick selects nothing)."""
    rows = st.session_state[RUNS_TABLE].selection.rows
    if rows:
        state.select_run(st.session_state[RUNS_TABLE + "-ids"][rows[0]])
        st.session_state[RUNS_TABLE + "-picked"] = True


def runs_table(shots: list[run_views.Snapshot]) -> None:
    st.subheader(f"All runs ({len(shots)})")
    if not shots:
        st.caption(f"No runs yet in {state.root()}")
        return
    table = run_views.runs_table(shots)
    st.session_state[RUNS_TABLE + "-ids"] = list(table["id"])
    percent = st.column_config.NumberColumn(format="%.1f%%")  # one decimal for every figure
    st.dataframe(table.assign(**{column: table[column].astype(float) * 100 for column in run_views.PERCENT_COLUMNS}),
                 hide_index=True, on_select=_pick_run, selection_mode="single-row", key=RUNS_TABLE,
                 placeholder="—", column_config={**dict.fromkeys(run_views.PERCENT_COLUMNS, percent),
                                                 "summary": st.column_config.TextColumn(width="large")})
    if st.session_state.pop(RUNS_TABLE + "-picked", False):
        st.rerun()  # the whole page: the selected run's view is outside this fragment


def rename_or_delete(run) -> None:
    with st.popover(f"Rename or delete {run.id}"):
        new_name = st.text_input("New name", value=run.name(), key="rename")
        if st.button("Rename", key="rename-button"):
            try:
                run.rename(new_name)
                st.session_state[FLASH] = f"Renamed {run.id} to {new_name!r}"
                st.rerun(scope="app")
            except RunError as error:
                st.error(str(error))
        confirm = st.checkbox(f"Yes, delete {run.id} and its files", key="confirm-delete")
        if st.button("Delete", disabled=not confirm, key="delete-button"):
            try:
                jobs.delete(run)
                state.select_run(None)
                st.session_state[FLASH] = f"Deleted {run.id} and its files"
                st.rerun(scope="app")
            except RunError as error:
                st.error(str(error))


def runs_view() -> None:
    """Every run, read once per poll; the selected run's header, charts and table row come from that read."""
    jobs.ensure_scheduler(state.root())  # it starts queued runs, with or without this page open
    st.caption(executor_text(state.root()))
    shots = [run_views.snapshot(run) for run in list_runs(state.root())]
    selected = state.selected_run()
    chosen = next((shot for shot in shots if selected is not None and shot.run.id == selected.id), None)
    selected_view(chosen)
    runs_table(shots)
    if chosen is not None:
        rename_or_delete(chosen.run)
    if any(shot.live for shot in shots) != st.session_state[POLLED_LIVE]:
        st.rerun(scope="app")  # a run started or ended: poll at the other pace (and show an ended run's actions)


st.segmented_control("View", [NEW_RUN, RUNS], key=VIEW, required=True, label_visibility="collapsed")
if st.session_state[VIEW] == NEW_RUN:
    new_run()
else:
    train_form.set_aside()
    if FLASH in st.session_state:
        st.success(st.session_state.pop(FLASH))
    st.session_state[POLLED_LIVE] = any(run_views.is_live(run) for run in list_runs(state.root()))
    st.fragment(runs_view, run_every=LIVE_SECONDS if st.session_state[POLLED_LIVE] else IDLE_SECONDS)()
