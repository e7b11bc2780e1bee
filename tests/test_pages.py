"""The Train and History pages through Streamlit's AppTest, on real run directories."""

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers import CLASSES, shown, write_mixed_folder

from advcore.storage.runs import Run, list_runs
from advcore.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SEED_CSV = (b",loss,base_loss,val_loss,val_base_loss,TrainType\n"
            b"0,0.9,0.9,0.8,0.8,Vanilla\n1,0.7,0.7,0.7,0.7,Vanilla\n2,1.9,0.6,0.9,0.6,Adversarial\n"
            b"3,0.6,0.6,0.7,0.6,Vanilla\n")


def make_run(root, name, phases, status="finished", robust=True):
    run = Run.create({"name": name, "mode": "adversarial", "data": {"dataset": "fashion_mnist"},
                      "model": {"architecture": "small_cnn"}, "attack": {"method": "pgd", "norm": "linf", "eps": 0.1},
                      "schedule": {"kind": "interleaved", "vanilla_epochs": 2, "adversarial_epochs": 1, "cycles": 2}},
                     root, name)
    epochs = range(1, len(phases) + 1)
    run.write_history(pd.DataFrame({
        "epoch": epochs, "phase": phases, "loss": [1.0 / e for e in epochs], "accuracy": [0.5] * len(phases),
        "val_loss": [1.1 / e for e in epochs], "val_accuracy": [0.6 + 0.01 * e for e in epochs],
        "val_robust_accuracy": [0.3] * len(phases) if robust else [None] * len(phases),
        "learning_rate": 1e-3, "eps": 0.1, "seconds": 2.0, "warning": ""}))
    run.update_status(status=status, started="2026-11-21T10:00:00+00:00", ended="2026-11-21T10:01:00+00:00")
    return run


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "0")  # nothing these tests submit may start training
    return tmp_path / "runs"


def page(name: str) -> AppTest:
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    app.run()
    return app.switch_page(f"pages/{name}_page.py").run()


@pytest.mark.parametrize("values, message", [
    ({"eps": 0.0}, "attack.eps: must be at least 1e-06 for adversarial training, got 0"),
    ({"lr_schedule": "cyclic", "until_stopped": True}, "lr_schedule.kind: a cyclic schedule"),
    ({"schedule": "warmup", "vanilla": 10, "epochs": 5}, "schedule.epochs: warm-up of 10 vanilla epochs"),
    ({"lr_schedule": "step", "milestones": "20"}, "lr_schedule.milestones: epoch 20 is after the run's last epoch (10)"),
    ({"eps": 3.0}, "attack.eps: 3 is over the linf limit of 1"),
    ({"method": "pgd", "step_size": 0.5}, "attack.step_size: 0.5 is more than twice eps (0.1)"),
    ({"architecture": "densenet_bc", "depth": 41}, "model.depth: "),
    ({"lr_schedule": "step", "milestones": "170, x"}, "lr_schedule.milestones: 'x' is not an epoch number"),
    ({"method": "gan"}, "generator: the gan method needs a trained GAN"),
    ({"objective": "trades", "method": "fgsm"}, "attack.method: trades runs its own PGD"),
    ({"keep_best": True, "robust_size": 0}, "validation.keep_best: picks the epoch of highest"),
    ({"lr": 0.0}, "optimizer.learning_rate: must be > 0"),  # out of range: a message, never a silent no
    ({"epochs": 0}, "schedule.epochs: must lie in [1, 100000], got 0"),
    ({"width": 100}, "model.width: must lie in [1, 16], got 100"),
    ({"seed": -1}, "seed: must lie in [0, 4294967295], got -1"),
    ({"steps": 5000}, "attack.steps: must lie in [1, 1000], got 5000"),
])
def test_invalid_form_values_are_explained_and_start_nothing(runs_root, values, message):
    app = page("train")
    for key, value in values.items():
        _set(app, key, value)
    _submit(app)
    assert any(message in e.value for e in app.error), [e.value for e in app.error]
    assert any("Not started: " in w.value for w in app.warning)
    assert list_runs(runs_root) == []


def test_every_problem_shows_at_once_next_to_its_field(runs_root):
    app = page("train")
    for key, value in {"lr_schedule": "step", "milestones": "x", "eps": 3.0, "lr": 0.0, "epochs": 0}.items():
        _set(app, key, value)
    _submit(app)
    errors = [e.value for e in app.error]
    assert any("attack.eps: 3 is over" in e for e in errors) and any("optimizer.learning_rate" in e for e in errors)
    assert any("schedule.epochs: must lie in" in e for e in errors), errors
    assert any("Not started: 4 problems" in w.value for w in app.warning)
    assert any("'x' is not an epoch number" in e for e in errors)
    _set(app, "milestones", "5")
    assert any("lr_schedule.milestones: epoch 5 is after" in e.value for e in app.error)  # epochs is 0
    assert list_runs(runs_root) == []


@pytest.mark.parametrize("values, shown, hidden", [
    ({}, {"width", "steps", "step_size", "epochs"}, {"depth", "growth", "activation", "milestones", "beta",
                                                      "awp_gamma", "zeta", "cycles", "weight", "fraction", "nesterov"}),
    ({"architecture": "densenet_bc"}, {"depth", "growth"}, {"width", "activation"}),
    ({"method": "fgsm"}, {"step_size"}, {"steps"}),
    ({"mode": "vanilla"}, {"epochs"}, {"method", "eps", "steps", "schedule", "objective", "awp"}),
    ({"schedule": "interleaved"}, {"vanilla", "adversarial", "cycles"}, {"epochs", "until_stopped"}),
    ({"lr_schedule": "step", "optimizer": "sgd", "objective": "trades"}, {"milestones", "nesterov", "beta"}, set()),
    ({"dataset": "image folder", "architecture": "resnet50"}, {"folder", "image_size", "fit", "pretrained"},
     {"width"}),
    ({}, {"dataset", "width", "noise_sigma"}, {"folder", "image_size", "fit", "pretrained", "noise_copies",
                                                "consistency"}),
    ({"noise_sigma": 0.25, "noise_copies": 2}, {"noise_copies", "consistency", "consistency_entropy"}, set()),
])
def test_the_form_shows_only_the_fields_that_apply(runs_root, values, shown, hidden):
    app = page("train")
    for key, value in values.items():
        _set(app, key, value)
    keys = {w.key.removeprefix("train_form.") for kind in ("selectbox", "number_input", "text_input", "checkbox")
            for w in app.main.get(kind) if w.key and w.key.startswith("train_form.")}
    assert shown <= keys and not hidden & keys, (shown - keys, hidden & keys)


def test_a_hidden_field_keeps_its_value_until_it_is_shown_again(runs_root):
    app = page("train")
    _set(app, "steps", 15)
    _set(app, "mode", "vanilla")  # the attack's fields go
    _set(app, "epochs", 3)
    assert not [w for w in app.main.get("number_input") if w.key == "train_form.steps"]
    _set(app, "mode", "adversarial")
    shown = {w.key: w.value for w in app.main.get("number_input")}
    assert (shown["train_form.steps"], shown["train_form.epochs"]) == (15, 3)


def _set(app: AppTest, key, value) -> None:
    """Sets one field and reruns, as a user's change does (a change may show other fields)."""
    widgets = [w for w in app.main.get(_kind(value, key)) if w.key == f"train_form.{key}"]
    widgets[0].set_value(value).run()


def _kind(value, key):
    if key == "milestones":
        return "text_input"
    if isinstance(value, bool):
        return "checkbox"
    return "selectbox" if isinstance(value, str) else "number_input"


def _submit(app: AppTest) -> None:
    next(b for b in app.get("button") if "Start training" in str(b.proto.label)).click().run()


def test_a_valid_form_submits_a_queued_run_and_selects_it(runs_root):
    app = page("train")
    [w for w in app.main.get("text_input") if w.key == "train_form.name"][0].set_value("from-form")
    [w for w in app.main.get("number_input") if w.key == "train_form.train_size"][0].set_value(2000)
    _submit(app)
    runs = list_runs(runs_root)
    assert len(runs) == 1 and runs[0].status()["status"] == "queued"
    assert runs[0].config()["data"]["train_size"] == 2000 and runs[0].name() == "from-form"
    assert runs[0].id in str(app.query_params["run"])


def test_the_draft_is_kept_after_start_for_the_next_run(runs_root):
    """Finding 6 of issue 30: the next run is usually a variation of the last."""
    app = page("train")
    _set(app, "mode", "vanilla")
    _set(app, "train_size", 2000)
    _set(app, "epochs", 3)
    _submit(app)
    assert app.segmented_control(key="train-view").value == "Runs"
    app.segmented_control(key="train-view").set_value("New run").run()
    shown = {w.key: w.value for w in app.main.get("number_input") + app.main.get("selectbox")}
    assert (shown["train_form.mode"], shown["train_form.train_size"], shown["train_form.epochs"]) == ("vanilla", 2000, 3)


def test_presets_fill_the_form(runs_root):
    app = page("train")
    app.selectbox(key="train_form.preset").select("Fast adversarial training (FGSM, random start, one-cycle LR)").run()
    assert app.selectbox(key="train_form.method").value == "fgsm_rs"
    assert app.selectbox(key="train_form.lr_schedule").value == "cyclic"


@pytest.mark.parametrize("preset, config_file", [
    ("Recipe of the bundled model 'pgd-linf'", "models/pgd-linf/config.json"),
    ("Recipe of the bundled model 'interleaved'", "models/interleaved/config.json"),
    ("Recipe resnet44_cifar10_all (GPU, seed settings)", "recipes/resnet44_cifar10_all.json"),
    ("Recipe densenet_bc_cifar100_fgsm (GPU, seed settings)", "recipes/densenet_bc_cifar100_fgsm.json"),
])
def test_a_recipe_is_a_preset_that_queues_exactly_its_config(runs_root, preset, config_file):
    app = page("train")
    app.selectbox(key="train_form.preset").select(preset).run()
    _submit(app)
    (run,) = list_runs(runs_root)
    committed = TrainConfig.from_file(ROOT / "assets" / config_file).to_dict()
    queued = run.config()
    if committed["schedule"]["epochs"] is None:  # an interleaved schedule counts cycles, not epochs
        queued["schedule"]["epochs"] = None
    assert queued == committed


def test_seed_004_options_queue_from_the_form(runs_root):
    app = page("train")
    for key, value in {"architecture": "woods_resnet44", "activation": "half_huber", "mode": "split",
                       "method": "l2_min", "lipschitz": True}.items():
        _set(app, key, value)
    _submit(app)
    (run,) = list_runs(runs_root)
    config = TrainConfig.from_dict(run.config())
    assert (config.attack.method, config.attack.steps, config.model.activation) == ("l2_min", 7, "half_huber")
    assert config.lipschitz.enabled and config.lipschitz.zeta == 0.2 and config.mode == "split"


def test_trades_awp_and_held_out_validation_queue_from_the_form(runs_root):
    app = page("train")
    for key, value in {"objective": "trades", "beta": 3.0, "validation_size": 2000, "awp": True,
                       "keep_best": True}.items():
        _set(app, key, value)
    _submit(app)
    (run,) = list_runs(runs_root)
    config = TrainConfig.from_dict(run.config())
    assert (config.objective.kind, config.objective.beta) == ("trades", 3.0)
    assert config.awp.enabled and config.awp.gamma == 5e-3 and config.validation.keep_best
    assert config.data.validation_size == 2000
    assert "pgd linf eps 0.1 TRADES beta 3 + AWP" in app.dataframe[0].value["summary"].iloc[0]


def test_the_smoothing_preset_queues_noise_and_consistency_training(runs_root):
    app = page("train")
    app.selectbox(key="train_form.preset").select(
        "Consistency regularization for smoothing (sigma 0.25, 2 copies, lambda 10)").run()
    _set(app, "epochs", 2)
    _submit(app)
    (run,) = list_runs(runs_root)
    config = TrainConfig.from_dict(run.config())
    assert (config.mode, config.noise.sigma, config.noise.copies, config.noise.consistency, config.noise.entropy) == (
        "vanilla", 0.25, 2, 10.0, 0.5)
    assert "vanilla + noise sigma 0.25, 2 copies, consistency 10" in app.dataframe[0].value["summary"].iloc[0]


def test_run_table_shows_every_run_and_damaged_ones_with_a_reason(runs_root):
    make_run(runs_root, "good", ["vanilla", "vanilla", "adversarial"])
    broken = make_run(runs_root, "broken", ["vanilla"])
    broken.status_path.write_text("{not json")
    app = page("train")
    app.get("button_group")[0].set_value("Runs").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert set(table["name"]) == {"good", "broken"}
    damaged = table[table["status"] == "damaged"].iloc[0]
    assert "status.json is damaged" in damaged["problem"]


def test_selected_run_shows_status_curves_and_shading(runs_root):
    run = make_run(runs_root, "watched", ["vanilla", "vanilla", "adversarial", "vanilla"])
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    app.query_params["run"] = run.id
    app.run()
    app.switch_page("pages/train_page.py").run()
    assert not app.exception
    assert any("finished" in m.value for m in app.markdown)
    charts = app.get("plotly_chart")
    assert len(charts) == 2
    figure = charts[0].proto.spec
    assert '"type":"rect"' in figure.replace(" ", "") and "adversarial" in figure


@pytest.mark.parametrize("columns, title", [
    ({"psi": [220.0, 231.5], "lipschitz_penalty": [1e-4, 2e-4]}, "Lipschitz penalty weight psi"),
    ({"consistency": [0.8, 0.3]}, "consistency of the noisy copies"),
])
def test_a_runs_own_terms_get_their_curve(runs_root, columns, title):
    run = make_run(runs_root, "smoothed", ["vanilla", "vanilla"])
    history = run.history()
    for column, values in columns.items():
        history[column] = values
    run.write_history(history)
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    app.query_params["run"] = run.id
    app.run()
    app.switch_page("pages/train_page.py").run()
    charts = [chart.proto.spec for chart in app.get("plotly_chart")]
    own = [chart for chart in charts if title in chart]
    assert len(charts) == 3 and len(own) == 1 and f'"name":"{next(iter(columns))}"' in own[0]


def test_history_overlays_runs_with_a_band_strip(runs_root):
    make_run(runs_root, "first", ["vanilla", "adversarial", "vanilla"])
    make_run(runs_root, "second", ["vanilla", "vanilla", "adversarial"])
    app = page("history")
    app.multiselect[0].set_value([o for o in app.multiselect[0].options if "example run" not in o]).run()
    assert not app.exception
    spec = app.get("plotly_chart")[0].proto.spec
    assert "first" in spec and "second" in spec and '"yaxis2"' in spec  # the per-run band strip
    summary = app.dataframe[0].value
    assert list(summary["adversarial epochs"]) == [1, 1]


def test_history_downloads_keep_their_links_across_a_rerun(runs_root):
    """Finding 7 of issue 30: a file made on click (a deferred download) got a new link at every rerun,
    so a click during one got nothing. The files are made with the page, their links stable."""
    make_run(runs_root, "first", ["vanilla", "adversarial"])
    app = page("history")
    links = lambda: {b.proto.label: (b.proto.url, b.proto.deferred_file_id) for b in app.get("download_button")}
    before = links()
    app.slider[0].set_value(0.25).run()  # the charts change, the merged history does not
    after = links()
    assert after["Download the merged history (CSV)"] == before["Download the merged history (CSV)"]
    assert all(url and not deferred for url, deferred in [*before.values(), *after.values()])


def test_a_fresh_history_page_shows_the_bundled_example_runs_read_only(runs_root):
    app = page("history")
    assert not app.exception
    options = app.multiselect[0].options
    examples = [o for o in options if o.endswith("(example run, read-only)")]
    assert [o.split(" ")[0] for o in examples] == ["standard", "pgd-linf", "fast-linf", "pgd-l2", "interleaved"]
    assert app.multiselect[0].value == ["interleaved (example run, read-only)"]
    spec = app.get("plotly_chart")[0].proto.spec
    assert '"type":"rect"' in spec.replace(" ", "") and "adversarial" in spec  # the shaded adversarial epochs
    assert list(app.dataframe[0].value["adversarial epochs"]) == [9]
    make_run(runs_root, "mine", ["vanilla", "adversarial"])
    app = page("history")
    assert app.multiselect[0].value == [o for o in app.multiselect[0].options if o.startswith("mine")]


def test_history_imports_the_notebook_csv_and_explains_a_bad_one(runs_root):
    app = page("history")
    app.file_uploader[0].set_value([("seed.csv", SEED_CSV, "text/csv"),
                                    ("bad.csv", b"\x00\x01garbage,,\n\"", "text/csv")]).run()
    assert not app.exception
    assert any("bad.csv" in shown(w.value) for w in app.warning)
    spec = app.get("plotly_chart")[0].proto.spec
    assert "seed.csv (uploaded)" in spec and '"type":"rect"' in spec.replace(" ", "")


def selected(run) -> AppTest:
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    app.query_params["run"] = run.id
    app.run()
    return app.switch_page("pages/train_page.py").run()


def _checkpoint(run, epoch: int) -> None:
    run.checkpoint_dir.mkdir(exist_ok=True)
    for suffix in (".keras", ".optimizer.npz"):
        (run.checkpoint_dir / f"epoch-{epoch}{suffix}").write_bytes(b"")


def _button(app: AppTest, label: str):
    return next(b for b in app.get("button") if str(b.proto.label).startswith(label))


def test_a_finished_run_is_extended_from_the_page(runs_root):
    run = make_run(runs_root, "extend-me", ["vanilla", "vanilla", "adversarial"])
    _checkpoint(run, 3)
    app = selected(run)
    assert not [b for b in app.get("button") if str(b.proto.label) == "Resume"]  # finished: nothing to resume
    app.number_input(key="extend-by").set_value(2).run()
    _button(app, "Extend by 2 cycles").click().run()
    assert run.status()["status"] == "queued" and run.config()["schedule"]["cycles"] == 4
    assert not app.exception


def test_a_resume_that_would_lose_work_is_refused_on_the_page(runs_root):
    run = make_run(runs_root, "no-checkpoint", ["vanilla"], status="stopped")
    app = selected(run)
    _button(app, "Resume").click().run()
    assert any("history.csv has 1 epochs but checkpoints/ holds no complete checkpoint" in shown(e.value) for e in app.error)
    assert run.status()["status"] == "stopped"


def test_a_run_is_cloned_into_the_form(runs_root):
    run = make_run(runs_root, "cloned", ["vanilla"])
    app = selected(run)
    _button(app, "Clone into the form").click().run()
    assert app.get("button_group")[0].value == "New run"
    assert app.text_input(key="train_form.name").value == "cloned"
    assert app.selectbox(key="train_form.schedule").value == "interleaved"
    assert app.number_input(key="train_form.cycles").value == 2
    _submit(app)
    (clone,) = [other for other in list_runs(runs_root) if other.id != run.id]
    queued, original = clone.config(), TrainConfig.from_dict(run.config()).to_dict()
    queued["schedule"]["epochs"] = original["schedule"]["epochs"]  # an interleaved schedule counts cycles
    original["data"]["validation_size"], original["attack"]["steps"] = 5000, 7  # the defaults, now written out
    assert queued == original


def test_short_runs_get_whole_epoch_ticks_and_the_summary_shows_dashes_not_none(runs_root):
    from app import charts, histories

    run = make_run(runs_root, "short", ["vanilla", "adversarial"], robust=False)
    assert charts.run_figure(run.history(), ["loss"], "loss").layout.xaxis.dtick == 1
    assert charts.metric_figure({"short": run.history()}, "loss").layout.xaxis.dtick == 1
    html = histories.summary_view(histories.summary({"short": run.history()})).to_html()
    assert "–" in html and "62.0%" in html and "None" not in html and "nan" not in html


def trace_x(spec: str, trace: int = 0) -> list:
    """A chart's x values (plotly writes numpy arrays as base64 "bdata")."""
    import base64
    import json

    import numpy as np

    x = json.loads(spec)["data"][trace]["x"]
    return np.frombuffer(base64.b64decode(x["bdata"]), x["dtype"]).tolist() if isinstance(x, dict) else x


def test_header_chart_and_table_agree_on_a_live_run(runs_root, advcore_process):
    """Finding 7 of issue 21: one read of the run per poll feeds the header, the chart and the table."""
    from advcore.storage import files
    from advcore.storage.runs import process_start_ticks

    run = make_run(runs_root, "live", ["vanilla", "vanilla", "adversarial"], status="running")
    run.update_status(pid=advcore_process.pid, pid_start=process_start_ticks(advcore_process.pid), total_epochs=6,
                      ended=None)
    files.write_json(run.progress_path, {"epoch": 4, "batch": 30, "steps_per_epoch": 60})
    app = selected(run)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Epochs done"] == "3 / 6"
    assert app.dataframe[0].value.set_index("id").loc[run.id, "epoch"] == 3
    assert app.dataframe[0].value.set_index("id").loc[run.id, "status"] == "running"
    assert list(trace_x(app.get("plotly_chart")[0].proto.spec)) == [1, 2, 3]
    assert "epoch 4: 50%" in app.get("progress")[0].proto.text


def test_a_dead_run_shows_its_real_wall_time_and_a_log_without_gpu_chatter(runs_root):
    """Finding 6 of issue 21: a run whose process died reads failed, its clock stopped (the time spent
    training: its one epoch of 2 s), and its log tail without TensorFlow's start-up noise."""
    run = make_run(runs_root, "dead", ["vanilla"], status="running")
    run.update_status(pid=2**22, started="2026-11-21T10:00:00+00:00", ended=None)  # above any pid Linux gives
    status = run.recorded_status() | {"updated": "2026-11-21T10:00:18+00:00"}
    run.status_path.write_text(__import__("json").dumps(status))
    run.log_path.write_text("E0000 00:00:1795554816.442510 9842 cuda_platform.cc:52] failed call to cuInit: "
                            "INTERNAL: CUDA error\nepoch    1  loss 0.5\nValueError: the real reason\n")
    app = selected(run)
    assert {m.label: m.value for m in app.metric}["Wall time"] == "0:00:02"
    log = app.code[0].value
    assert "the real reason" in log and "cuInit" not in log


def test_wall_time_counts_training_not_the_time_a_run_sat_ended(runs_root, advcore_process):
    """Finding 4 of issue 30: extended a day after it finished, a run of three 2-second epochs has trained
    for 6 s plus the time since it resumed, not for a day."""
    import datetime as dt

    from advcore.storage.runs import process_start_ticks

    run = make_run(runs_root, "extended", ["vanilla", "vanilla", "adversarial"])  # started 2026-11-21
    app = selected(run)
    assert {m.label: m.value for m in app.metric}["Wall time"] == "0:00:06"
    resumed = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)).isoformat(timespec="seconds")
    run.update_status(status="running", pid=advcore_process.pid, pid_start=process_start_ticks(advcore_process.pid),
                      resumed=resumed, ended=None)
    status = run.recorded_status() | {"updated": resumed}
    run.status_path.write_text(__import__("json").dumps(status))
    hours, minutes, seconds = map(int, {m.label: m.value for m in selected(run).metric}["Wall time"].split(":"))
    assert 36 <= 3600 * hours + 60 * minutes + seconds <= 50  # 6 s of epochs + about 30 s since the resume


def test_a_folder_dataset_is_previewed_and_trained_from_the_form(runs_root, tmp_path):
    folder = write_mixed_folder(tmp_path / "photos")
    app = page("train")
    _set(app, "dataset", "image folder")
    [w for w in app.main.get("text_input") if w.key == "train_form.folder"][0].set_value(str(tmp_path / "nowhere")).run()
    assert any("no such folder" in e.value for e in app.error)
    [w for w in app.main.get("text_input") if w.key == "train_form.folder"][0].set_value(str(folder)).run()
    _set(app, "image_size", 32)
    # 27 training files, 2 of them damaged (finding 5 of issue 30: counted no more)
    assert app.number_input(key="train_form.validation_size").value == 2 and not app.error  # 10% of 25
    _set(app, "validation_size", 30)
    assert [e.value for e in app.error] == ["data.validation_size: the folder's training split holds 25 images; hold "
                                            "out fewer (10% is 2)"]
    _set(app, "validation_size", 2)
    assert not app.error
    counts = app.dataframe[0].value
    assert list(counts.index) == list(CLASSES) and (counts["train"] + counts["test"]).tolist() == [10, 10, 10]
    assert any("3 classes, 30 images" in c.value and "the files skipped are listed below" in c.value
               for c in app.caption)
    assert "4 files of the image folder skipped: training 2, test 1, no split 1" in [e.label for e in app.expander]
    skipped = app.table[0].value.reset_index()
    assert list(skipped["file"]) == ["cat/broken.jpg", "eel/fake.png", "dog/empty.png", "dog/notes.txt"]
    assert list(skipped["split"]) == ["training", "training", "test", "no split"]
    assert skipped.set_index("file").loc["dog/empty.png", "reason"] == "the file is empty"
    assert any(shown(c.value) == f"Files in {folder}" for c in app.caption)
    assert len(app.main.get("image")) == 3 and any("32 x 32 px, crop" in c.value for c in app.caption)
    _set(app, "architecture", "mobilenet_v2")
    _submit(app)
    run = list_runs(runs_root)[0]
    assert run.config()["data"].items() >= {"dataset": str(folder), "image_size": 32, "fit": "crop"}.items()
    assert run.config()["model"]["architecture"] == "mobilenet_v2"


def test_the_run_page_lists_the_skipped_files_per_split(runs_root):
    from advcore.storage.folder_listing import Skipped

    run = make_run(runs_root, "folder", ["vanilla"])
    run.write_skipped([Skipped("/photos/test/b/empty.png", "the file is empty", "test"),
                       Skipped("/photos/train/a/cut.png", "Input is empty.", "train"),
                       Skipped("/photos/a/notes.txt", "not an image format TensorFlow decodes", "")])
    app = selected(run)
    assert "3 files of the image folder skipped: training 1, test 1, no split 1" in [e.label for e in app.expander]
    table = app.table[0].value.reset_index()
    assert table.to_dict(orient="records") == [
        {"split": "training", "file": "train/a/cut.png", "reason": "Input is empty."},
        {"split": "test", "file": "test/b/empty.png", "reason": "the file is empty"},
        {"split": "no split", "file": "a/notes.txt", "reason": "not an image format TensorFlow decodes"}]
    run.skipped_path.write_text('{"skipped": [["test", 7, "x"]]}')
    app = selected(run)
    assert not app.exception and any("skipped.json is damaged" in shown(w.value) for w in app.warning)


def queue_on_two_gpus(help_start: str) -> AppTest:
    """The form offers 1, 2 or all GPUs and says how many are free (`help_start`); a run on 2 is queued."""
    app = page("train")
    box = app.selectbox(key="train_form.gpus")
    assert box.options == ["default: 1 GPU", "0: the CPU", "1", "2", "all"]
    assert box.help.startswith(help_start)
    box.set_value(2).run()
    _submit(app)
    return app


def test_the_form_offers_the_machines_gpus_and_the_table_shows_what_a_run_waits_for(runs_root, monkeypatch):
    monkeypatch.setenv("ADVLAB_GPUS", "0,1")  # a faked two-GPU box
    app = queue_on_two_gpus("2 of 2 GPUs free now")
    run = list_runs(runs_root)[0]
    assert run.config()["distribute"]["gpus"] == 2
    table = [frame.value for frame in app.dataframe if "devices" in frame.value.columns][0]
    assert table.loc[0, "devices"] == "waits for 2 GPUs"  # ADVLAB_MAX_RUNS=0 keeps it queued
    monkeypatch.setenv("ADVLAB_GPUS", "none")
    app = page("train")
    assert app.selectbox(key="train_form.gpus").options == ["default: the CPU", "0: the CPU"]


def test_a_runs_gpus_show_in_its_status_line_and_the_table(runs_root):
    run = make_run(runs_root, "on-gpus", ["vanilla"])
    run.update_status(gpus=[0, 1])
    app = selected(run)
    assert any("· GPU 0, 1" in m.value for m in app.markdown)
    table = [frame.value for frame in app.dataframe if "devices" in frame.value.columns][0]
    assert table.loc[0, "devices"] == "GPU 0, 1"


def executor_caption(app: AppTest) -> str:
    return shown(next(c.value for c in app.caption if c.value.startswith("Executor:")))


def test_the_runs_view_says_where_runs_go_and_a_cluster_runs_node(runs_root, monkeypatch):
    from advcore.jobs import cluster

    run = make_run(runs_root, "somewhere", ["vanilla"])
    assert executor_caption(selected(run)) == "Executor: **this machine**, holding queued runs (ADVLAB_MAX_RUNS is 0)"
    monkeypatch.setenv("ADVLAB_CLUSTER", "10.0.0.5:6379")
    assert "not connected yet" in executor_caption(selected(run))
    cluster.write_state(runs_root, "10.0.0.5:6379", error="no Ray cluster answers at 10.0.0.5:6379 (refused)")
    assert executor_caption(selected(run)).endswith("not connected: no Ray cluster answers at 10.0.0.5:6379 (refused)")
    cluster.write_state(runs_root, "10.0.0.5:6379", dashboard="http://10.0.0.5:8265", nodes=[{"host": "a"}, {"host": "b"}],
                          free_cpus=3.0, total_cpus=8.0, free_gpus=1.0, total_gpus=2.0)
    assert executor_caption(selected(run)) == ("Executor: **Ray cluster at 10.0.0.5:6379** · 2 nodes · CPUs 3 of 8 "
                                               "free · GPUs 1 of 2 free · [Ray dashboard](http://10.0.0.5:8265)")
    cluster.write_state(runs_root, "10.0.0.5:6379", dashboard="javascript:alert(1)", nodes=[], written=0)
    caption = executor_caption(selected(run))  # a planted link is dropped; an old description says so
    assert "dashboard" not in caption and "its scheduler is not running" in caption
    cluster.write_state(runs_root, "10.0.0.5:6379")  # no nodes written: none, not a traceback
    assert " · 0 nodes · CPUs 0 of 0 free" in executor_caption(selected(run))
    run.update_status(status="queued", job=f"{run.id}--0a1b2c3d", gpus_asked=1)
    table = [frame.value for frame in selected(run).dataframe if "devices" in frame.value.columns][0]
    assert table.loc[0, "devices"] == "Ray: waits for 1 GPU"
    run.update_status(status="running", pid=2**22 - 1, host="gpu-node-7", gpus=[0])
    table = [frame.value for frame in selected(run).dataframe if "devices" in frame.value.columns][0]
    assert table.loc[0, "devices"] == "gpu-node-7: GPU 0"


def test_on_a_cluster_the_form_offers_the_largest_nodes_gpus(runs_root, monkeypatch):
    from advcore import devices
    from advcore.jobs import cluster, gpus

    monkeypatch.setenv("ADVLAB_GPUS", "none")  # this machine has none: the cluster's nodes count
    monkeypatch.setenv("ADVLAB_CLUSTER", "10.0.0.5:6379")
    box = page("train").selectbox(key="train_form.gpus")
    assert len(box.options) == 11 and box.help.startswith("the cluster's GPUs are not known yet")
    cluster.write_state(runs_root, "10.0.0.5:6379", nodes=[{"host": "a", "gpus": 1}, {"host": "b", "gpus": 2}],
                        free_gpus=3.0, total_gpus=3.0)
    queue_on_two_gpus("2 GPUs on the cluster's largest node, 3 of 3 free on the cluster now")
    assert list_runs(runs_root)[0].config()["distribute"]["gpus"] == 2
    cluster.write_state(runs_root, "10.0.0.5:6379", nodes=[{"host": "a", "gpus": 1}])
    assert page("train").selectbox(key="train_form.gpus").options == ["default: 1 GPU", "0: the CPU", "1"]
    with pytest.raises(devices.DeviceError, match="asks for 2 GPUs; the cluster's largest node has 1$"):
        gpus.check_request({"distribute": {"gpus": 2}}, range(1), cluster.LARGEST_NODE)  # the scheduler's words


def test_on_a_cluster_the_form_asks_for_workers_and_queues_a_run_trained_by_them(runs_root, monkeypatch):
    assert not [w for w in page("train").number_input if w.key == "train_form.workers"]  # this machine: one process
    monkeypatch.setenv("ADVLAB_CLUSTER", "10.0.0.5:6379")
    app = page("train")
    workers = app.number_input(key="train_form.workers")
    assert workers.value == 1 and workers.help.startswith("processes training the run together on the cluster's nodes")
    workers.set_value(2).run()
    _submit(app)
    assert not app.error, [e.value for e in app.error]
    assert list_runs(runs_root)[0].config()["distribute"]["workers"] == 2


def test_a_bad_gpu_list_is_explained_on_the_form_not_a_traceback(runs_root, monkeypatch):
    monkeypatch.setenv("ADVLAB_GPUS", "zero")
    app = page("train")
    assert not app.exception
    assert any("ADVLAB_GPUS: give GPU indices" in e.value for e in app.error)
    _submit(app)
    assert not list_runs(runs_root)  # refused, with the reason under the field
