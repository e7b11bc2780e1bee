"""The Train and History pages through Streamlit's AppTest, on real run directories."""

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

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
    ({"eps": 0.0}, "attack.eps: must be > 0"),
    ({"lr_schedule": "cyclic", "until_stopped": True}, "lr_schedule.kind: a cyclic schedule"),
    ({"schedule": "warmup", "vanilla": 10, "epochs": 5}, "schedule.epochs: warm-up of 10 vanilla epochs"),
    ({"mode": "vanilla", "schedule": "interleaved"}, "schedule.kind: a interleaved schedule needs"),
    ({"activation": "half_huber"}, "model.activation: half_huber is built into woods_resnet44 only"),
    ({"lr_schedule": "step", "milestones": "170, x"}, "lr_schedule.milestones[1]: must be an integer, got 'x'"),
    ({"method": "rmse_ball", "step_size": 0.01}, "attack.step_size: rmse_ball sets its own steps"),
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
        widgets = [w for w in app.main.get(_kind(value, key)) if w.key == f"train_form.{key}"]
        widgets[0].set_value(value)
    _submit(app)
    assert any(message in e.value for e in app.error), [e.value for e in app.error]
    assert list_runs(runs_root) == []


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
    app.selectbox(key="train_form.architecture").select("woods_resnet44")
    app.selectbox(key="train_form.activation").select("half_huber")
    app.selectbox(key="train_form.mode").select("split")
    app.selectbox(key="train_form.method").select("l2_min")
    [w for w in app.main.get("checkbox") if w.key == "train_form.lipschitz"][0].check()
    _submit(app)
    (run,) = list_runs(runs_root)
    config = TrainConfig.from_dict(run.config())
    assert (config.attack.method, config.attack.steps, config.model.activation) == ("l2_min", 7, "half_huber")
    assert config.lipschitz.enabled and config.lipschitz.zeta == 0.2 and config.mode == "split"


def test_trades_awp_and_held_out_validation_queue_from_the_form(runs_root):
    app = page("train")
    app.selectbox(key="train_form.objective").select("trades")
    app.number_input(key="train_form.beta").set_value(3.0)
    app.number_input(key="train_form.validation_size").set_value(2000)
    for key in ("awp", "keep_best"):
        [w for w in app.main.get("checkbox") if w.key == f"train_form.{key}"][0].check()
    _submit(app)
    (run,) = list_runs(runs_root)
    config = TrainConfig.from_dict(run.config())
    assert (config.objective.kind, config.objective.beta) == ("trades", 3.0)
    assert config.awp.enabled and config.awp.gamma == 5e-3 and config.validation.keep_best
    assert config.data.validation_size == 2000
    assert "pgd linf eps 0.1 TRADES beta 3 + AWP" in app.dataframe[0].value["summary"].iloc[0]


def test_run_table_shows_every_run_and_damaged_ones_with_a_reason(runs_root):
    make_run(runs_root, "good", ["vanilla", "vanilla", "adversarial"])
    broken = make_run(runs_root, "broken", ["vanilla"])
    broken.status_path.write_text("{not json")
    app = page("train")
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


def test_a_lipschitz_run_shows_its_psi_curve(runs_root):
    run = make_run(runs_root, "smoothed", ["vanilla", "vanilla"])
    history = run.history()
    history["psi"], history["lipschitz_penalty"] = [220.0, 231.5], [1e-4, 2e-4]
    run.write_history(history)
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    app.query_params["run"] = run.id
    app.run()
    app.switch_page("pages/train_page.py").run()
    charts = [chart.proto.spec for chart in app.get("plotly_chart")]
    assert len(charts) == 3 and "Lipschitz penalty weight psi" in charts[2] and '"name":"psi"' in charts[2]


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
    assert any("bad.csv" in w.value for w in app.warning)
    spec = app.get("plotly_chart")[0].proto.spec
    assert "seed.csv (uploaded)" in spec and '"type":"rect"' in spec.replace(" ", "")
