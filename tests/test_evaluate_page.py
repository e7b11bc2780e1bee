"""The Evaluate page through AppTest: the form's checks, and a real evaluation run by the worker."""

import json
from pathlib import Path

import pytest
from helpers import kill_worker, wait_for
from streamlit.testing.v1 import AppTest

from advcore.evaluation import worker

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def page(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("ADVLAB_RUNS_DIR", str(root))
    monkeypatch.setenv("ADVLAB_UPLOADS_DIR", str(tmp_path / "uploads"))
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    app.run()
    app.switch_page("pages/evaluate_page.py").run()
    yield app
    kill_worker(root)


def submit(app, **values):
    for key, value in values.items():
        for kind in ("text_input", "number_input", "multiselect", "checkbox", "radio"):
            found = [w for w in getattr(app, kind) if w.key == f"eval.{key}"]
            if found:
                found[0].set_value(value)
    app.button[0].click().run()
    assert not app.exception, app.exception[0].value
    return [e.value for e in app.error]


@pytest.mark.parametrize("values, message", [
    ({"linf": "0, 0.1, lots"}, "not a number: 'lots'"),
    ({"linf": "0, -0.1"}, "eps.linf: -0.1 is not a budget >= 0"),
    ({"count": 0}, "count: evaluate 1..10000 images"),
    ({"count": 20000}, "count: evaluate 1..10000 images"),
    ({"steps": 0}, "steps must lie in 1..1000"),
    ({"models": []}, "choose at least one model"),
    ({"attacks": []}, "attacks: choose at least one attack"),
    ({"attacks": ["PGD L2"], "l2": ""}, "needs at least one l2 eps"),
    ({"attacks": ["Certified L2 (randomized smoothing)"], "sigma": 0.0}, "sigma must be a finite number > 0"),
])
def test_bad_values_are_explained_and_nothing_is_queued(page, values, message):
    errors = submit(page, **values)
    assert len(errors) == 1 and message in errors[0], errors
    assert not worker.evaluations_root().exists() or not list(worker.evaluations_root().glob("2*"))


def test_an_evaluation_runs_in_the_background_and_shows_curves_matrix_and_downloads(page):
    assert submit(page, count=200, sanity=False, unit="/255", linf="0, 12.75, 25.5", name="mine") == []
    assert "Queued evaluation" in page.toast[0].value  # gone once it runs, unlike a banner
    wait_for(lambda: "finished" in str([m.value for m in page.run().markdown]), interval=0.5)
    assert "Status: :green-badge[finished]" in [m.value for m in page.markdown]
    assert "-mine-" in page.selectbox[0].value
    assert len(page.get("plotly_chart")) == 2  # curves and per-class
    assert [d.proto.label for d in page.get("download_button")] == [
        "Download results (CSV)", "Download results and plan (JSON)"]
    assert page.select_slider[0].options == ["0", "0.05", "0.1"]  # /255 units became [0, 1] budgets


def test_a_wrong_model_file_is_refused_on_the_page(page):
    page.file_uploader(key="model_upload").set_value(("model.keras", b"PK\x03\x04 broken", "application/zip")).run()
    errors = [e.value for e in page.error]
    assert len(errors) == 1 and errors[0].startswith("Model not added: model.keras: the archive is truncated or damaged")
    assert page.multiselect(key="eval.models").value  # the form is still there, with the bundled models


def test_autoattack_shows_what_each_component_broke(page):
    standard = page.multiselect(key="eval.models").options[0]
    assert submit(page, models=[standard], attacks=["AutoAttack Linf", "PGD Linf"], count=12, sanity=False,
                  linf="0.1", name="auto") == []
    wait_for(lambda: "finished" in str([m.value for m in page.run().markdown]), interval=0.5)
    lines = [m.value for m in page.markdown if "AutoAttack Linf (standard)" in m.value]
    assert len(lines) == 1 and "APGD-CE broke" in lines[0] and "APGD-T 0.0%, FAB-T 0.0%, Square 0.0%" in lines[0]
    assert "robust accuracy 0.0%" in lines[0]  # the standard model has no robustness at Linf 0.1


def test_a_certified_evaluation_sets_the_smoothed_models_certificates_beside_an_attack(page):
    standard = page.multiselect(key="eval.models").options[0]
    certified = "Certified L2 (randomized smoothing)"
    assert submit(page, models=[standard], attacks=["PGD L2", certified], count=4, sanity=False, l2="0, 0.5",
                  sigma=0.25, name="certified") == []
    wait_for(lambda: "finished" in str([m.value for m in page.run().markdown]), interval=0.5)
    assert any(c.value.startswith("A certified row is the smoothed classifier's") for c in page.caption)
    content = json.loads(next(worker.evaluations_root().glob("2*/results.json")).read_text())
    rows = [row for row in content["cells"] if row["attack"] == "Certified L2, sigma 0.25 (quick)"]
    assert [(row["norm"], row["eps"]) for row in rows] == [("l2", 0.0), ("l2", 0.5)]
    assert rows[1]["robust_accuracy"] <= rows[0]["robust_accuracy"]


def test_on_a_cluster_the_form_asks_for_shards_and_an_unreachable_head_fails_the_evaluation_on_the_page(
        page, monkeypatch):
    from advcore.jobs import cluster

    assert not [w for w in page.number_input if w.key == "eval.shards"]  # this machine: no shards to ask for
    address = "127.0.0.1:9"  # the discard port: nothing answers there
    monkeypatch.setenv(cluster.CLUSTER_ENV, address)
    monkeypatch.setenv(cluster.SHARD_CPUS_ENV, "2")
    cluster.write_state(worker.evaluations_root().parent, address, dashboard="", nodes=[{"host": "a", "gpus": 0}],
                        free_cpus=6, total_cpus=6, free_gpus=0, total_gpus=0)
    page.run()
    [shards] = [w for w in page.number_input if w.key == "eval.shards"]
    assert shards.value == 3 and shards.label == "Shards on the cluster (1..256)"
    assert shards.help.startswith("One per 2 CPUs of the cluster: 3 by default")
    assert submit(page, count=100, sanity=False, shards=5) == []
    [job] = list(worker.evaluations_root().glob("2*"))
    assert json.loads((job / "config.json").read_text())["shards"] == 5
    wait_for(lambda: "failed" in str([m.value for m in page.run().markdown]), interval=0.5)
    assert any("no Ray cluster answers at 127" in e.value and "Connection refused" in e.value for e in page.error)
