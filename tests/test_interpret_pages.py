"""The Interpret and Compare pages through AppTest, with real models and the real background worker."""

from pathlib import Path

import pytest
from helpers import kill_worker, wait_for
from streamlit.testing.v1 import AppTest

from advcore.evaluation import worker

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("ADVLAB_RUNS_DIR", str(root))
    monkeypatch.setenv("ADVLAB_UPLOADS_DIR", str(tmp_path / "uploads"))
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    app.run()
    yield app
    kill_worker(root)


def ok(app) -> AppTest:
    assert not app.exception, app.exception[0].value
    return app


def captions(app) -> list[str]:
    return [image.proto.imgs[0].caption for image in app.get("image")]


def texts(app) -> str:
    return " ".join(m.value for m in app.markdown)


def test_interpret_draws_activations_traverses_and_explains(app):
    app.switch_page("pages/interpret_page.py").run()
    app.selectbox(key="model").set_value("bundled:pgd-linf").run()
    ok(app)
    assert captions(app)[:10] == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                  "Sneaker", "Bag", "Ankle boot"]
    assert "Perceptual alignment" in texts(app) and "judge accuracy" in texts(app)
    labels = [d.proto.label for d in app.get("download_button")]
    assert labels[:3] == ["Grid (PNG)", "Steps (GIF)", "Exact values (.npy)"]
    app.radio(key="image_source").set_value("Test set").run()
    ok(app)
    assert len(app.get("video")) == 1
    assert "Last frame: classified **T-shirt/top**" in texts(app)  # test image 0, an ankle boot, to class 0
    assert "Explanations (zip, seed 004's file names)" in [d.proto.label for d in app.get("download_button")]
    explanation_captions = [c for c in captions(app) if "->" in c]
    assert len(explanation_captions) == 12 and explanation_captions[0].startswith("true class Ankle boot")


def test_interpret_explains_bad_values_instead_of_failing(app):
    app.switch_page("pages/interpret_page.py").run()
    app.radio(key="image_source").set_value("Test set").run()
    app.radio(key="trav-budget").set_value("l2").run()
    app.number_input(key="trav-eps-l2").set_value(0.0).run()
    errors = [e.value for e in ok(app).error]
    assert errors == ["a l2 budget needs eps > 0, got 0.0"]
    app.multiselect(key="act-classes").set_value([]).run()
    assert "Choose at least one class." in [i.value for i in ok(app).info]


def test_interpret_computes_ara_in_the_background(app):
    app.switch_page("pages/interpret_page.py").run()
    app.number_input(key="ara-count").set_value(20).run()
    app.number_input(key="ara-steps").set_value(30).run()
    app.button(key="ara-run").click().run()
    ok(app)
    wait_for(lambda: any("Attack ARA" in frame.value.columns for frame in ok(app.run()).dataframe),
             timeout=180, interval=1)
    assert "Per-image minimal perturbations (CSV)" in [d.proto.label for d in app.get("download_button")]


def test_compare_profiles_two_models_in_the_background_then_reads_them_back(app):
    app.switch_page("pages/compare_page.py").run()
    app.select_slider(key="compare-count").set_value(50).run()
    assert not worker.evaluations_root().exists()  # nothing is computed before the user asks
    ok(app.button(key="compare-run").click().run())
    jobs = list(worker.evaluations_root().glob("2*"))
    assert len(jobs) == 2  # one profile job per model
    assert len(app.get("video")) == 2  # the side-by-side traversals do not wait for the profiles
    wait_for(lambda: ok(app.run()).dataframe and len(app.dataframe[0].value) == 2, timeout=300, interval=2)
    table = app.dataframe[0].value
    robust, standard = "pgd-linf (bundled)", "standard (bundled)"
    assert list(table.index) == [standard, robust]  # in the order picked: the defaults, standard first
    assert table.loc[robust, "Attack ARA"] > table.loc[standard, "Attack ARA"]
    assert table.loc[robust, "PGD-20 Linf 0.1"] > table.loc[standard, "PGD-20 Linf 0.1"] + 0.3
    assert "judge accuracy: activations" in table.columns
    assert len(app.get("plotly_chart")) == 2
    second = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)  # another visit
    second.run()
    second.switch_page("pages/compare_page.py").run()
    ok(second.select_slider(key="compare-count").set_value(50).run())
    assert second.dataframe[0].value.equals(table)  # read back at once, nothing recomputed
    assert not [b for b in second.button if b.key == "compare-run"]
    assert len(list(worker.evaluations_root().glob("2*"))) == 2
