"""The GAN parts of the pages through AppTest: the GAN form and live samples on Train, the
Playground's unrestricted tab, the Augmentation study page; and the app launching a real GAN run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import kill_scheduler, wait_for
from streamlit.testing.v1 import AppTest

from advcore.generative import study
from advcore.generative.gan_training import HISTORY_COLUMNS
from advcore.storage import images
from advcore.storage.runs import Run, list_runs
from advcore.training.config import GanConfig
from app import jobs

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_GAN = ROOT / "assets" / "generators" / "fashion_mnist"


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ADVLAB_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "0")  # nothing these tests queue may start training
    return tmp_path / "runs"


def page(name: str, run_id: str | None = None) -> AppTest:
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    if run_id:
        app.query_params["run"] = run_id
    app.run()
    app.switch_page(f"pages/{name}_page.py").run()
    assert not app.exception, app.exception[0].value
    return app


def finished_gan_run(root) -> Run:
    """A GAN run as training leaves it: config, three epochs of history, sample grids, the models."""
    run = Run.create(GanConfig.from_dict({"name": "my-gan", "epochs": 3}).to_dict(), root, "my-gan")
    history = pd.DataFrame({column: np.linspace(0.1, 0.9, 3) for column in HISTORY_COLUMNS})
    run.write_history(history.assign(epoch=[1, 2, 3]))
    run.samples_path().parent.mkdir()
    images.write_png(run.samples_path(), np.full((20, 30, 1), 0.5, np.float32))
    for name in ("generator.keras", "critic.keras"):
        shutil.copy(BUNDLED_GAN / name, run.path / name)
    run.update_status(status="finished", started="2026-11-21T10:00:00+00:00", ended="2026-11-21T10:05:00+00:00")
    return run


def test_the_gan_form_queues_a_gan_run(runs_root):
    app = page("train")
    app.radio(key="what-to-train").set_value("A GAN").run()
    app.text_input[0].set_value("fm-gan")
    next(b for b in app.get("button") if "Start GAN training" in str(b.proto.label)).click().run()
    assert not app.exception, app.exception[0].value
    (run,) = list_runs(runs_root)
    config = GanConfig.from_dict(run.config())
    assert run.status()["status"] == "queued" and config.name == "fm-gan" and config.critic_steps == 5
    assert run.id in str(app.query_params["run"])


def test_the_gan_form_shows_every_problem_at_once(runs_root):
    app = page("train")
    app.radio(key="what-to-train").set_value("A GAN").run()
    for label, value in (("Latent size (z)", 0), ("Learning rate (Adam, betas 0 / 0.9)", 0.0)):
        next(w for w in app.number_input if w.label == label).set_value(value)
    next(b for b in app.get("button") if "Start GAN training" in str(b.proto.label)).click().run()
    errors = [e.value for e in app.error]
    assert any(e.startswith("z_dim: must lie in [1, 4096]") for e in errors), errors
    assert any(e.startswith("learning_rate: must be > 0") for e in errors), errors
    assert list_runs(runs_root) == []


def test_a_gan_run_shows_its_losses_and_latest_samples_and_stays_off_history(runs_root):
    run = finished_gan_run(runs_root)
    app = page("train", run.id)
    assert len(app.get("plotly_chart")) == 2
    assert any("GAN losses" in chart.proto.spec for chart in app.get("plotly_chart"))
    assert len(app.get("image")) == 1
    table = app.dataframe[0].value
    assert "GAN (auto, z 128)" in table.set_index("id").loc[run.id, "summary"]
    history = page("history")
    assert not any("my-gan" in option for option in history.multiselect[0].options)


def test_the_unrestricted_tab_fools_the_model_and_offers_downloads(runs_root):
    app = page("playground")
    app.selectbox(key="model").set_value("bundled:standard").run()
    app.selectbox(key="u-source").set_value("Trouser")
    app.number_input(key="u-count").set_value(4)
    app.number_input(key="u-steps").set_value(150)
    next(b for b in app.get("button") if "Generate and attack" in str(b.proto.label)).click().run()
    assert not app.exception, app.exception[0].value
    fooled = next(m for m in app.metric if m.label == "Fooled")
    assert int(fooled.value.rstrip("%")) >= 50
    captions = [i.caption for image in app.get("image") for i in image.proto.imgs]
    assert any("GAN sees: Trouser" in caption for caption in captions)
    assert sum("Download" in str(b.proto.label) for b in app.get("download_button")) >= 2


def test_the_unrestricted_tab_refuses_a_target_equal_to_the_class(runs_root):
    app = page("playground")
    app.selectbox(key="u-source").set_value("Bag")
    app.selectbox(key="u-target").set_value("Bag")
    next(b for b in app.get("button") if "Generate and attack" in str(b.proto.label)).click().run()
    assert any("must differ from the generated class" in e.value for e in app.error)


def test_the_study_page_queues_four_runs_and_tabulates_them(runs_root):
    app = page("study")
    next(b for b in app.get("button") if "Queue the four runs" in str(b.proto.label)).click().run()
    assert not app.exception, app.exception[0].value
    (record,) = study.list_studies(runs_root)
    assert sorted(record["runs"]) == sorted(study.ARMS) and len(list_runs(runs_root)) == 4
    table = app.dataframe[0].value
    assert list(table["arm"]) == list(study.ARMS) and set(table["status"]) == {"queued"}


def test_the_app_launches_a_gan_run_as_its_own_process(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "1")
    config = GanConfig.from_dict({"name": "launched", "epochs": 1, "batch_size": 32, "critic_steps": 2, "z_dim": 8,
                                  "data": {"dataset": "fashion_mnist", "train_size": 256}})
    run = jobs.submit(config, tmp_path)
    try:
        wait_for(lambda: "pid" in run.recorded_status(), 30, 0.1)  # the scheduler started it
        wait_for(lambda: run.status()["status"] in ("finished", "failed"), 240, 0.2)
    finally:
        kill_scheduler(tmp_path)
    assert run.status()["status"] == "finished", run.log_tail()
    assert (run.path / "generator.keras").is_file() and run.samples_path(1).is_file()


def test_the_classifier_form_trains_with_unrestricted_examples_of_a_chosen_gan(runs_root):
    app = page("train")
    app.selectbox(key="train_form.mode").set_value("split")
    app.selectbox(key="train_form.method").set_value("unrestricted")
    app.number_input(key="train_form.steps").set_value(15)
    next(b for b in app.get("button") if "Start training" in str(b.proto.label)).click().run()
    assert any("generator: the unrestricted method needs a trained GAN" in e.value for e in app.error)
    assert list_runs(runs_root) == []
    app.selectbox(key="train_form.generator").set_value(str(BUNDLED_GAN))
    app.number_input(key="train_form.gan_size").set_value(200)
    next(b for b in app.get("button") if "Start training" in str(b.proto.label)).click().run()
    (run,) = list_runs(runs_root)
    config = run.config()
    assert config["attack"]["method"] == "unrestricted" and config["attack"]["steps"] == 15
    assert config["generator"] == str(BUNDLED_GAN) and config["validation"]["gan_size"] == 200


def test_the_train_and_study_pages_list_gans_without_importing_tensorflow():
    code = ("import sys, app.train.train_form, app.train.gan_form, app.study.study_views, app.generators; "
            "assert app.generators.list_generators(), 'no GAN listed'; "
            "assert 'tensorflow' not in sys.modules, 'TensorFlow imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
