"""A corpus of damaged run files: each is named with its file and reason by the one validating reader,
every page still works (the damaged run listed as such, deletable), and every other run is unharmed."""

import json

import pandas as pd
import pytest
from helpers import shown
from streamlit.testing.v1 import AppTest
from test_pages import ROOT, make_run

from advcore.jobs import scheduler
from advcore.storage.runs import Run, RunError, list_runs
from app import jobs


def _edit_json(path, old: str, new: str):
    text = path.read_text()
    assert old in text, text
    path.write_text(text.replace(old, new))


def _set_history(run: Run, column: str, values):
    history = run.history()
    history[column] = values
    history.to_csv(run.history_path, index=False)


# name: (damage, the reader that must refuse, words of its message)
DAMAGE = {
    "status.json not UTF-8": (lambda run: run.status_path.write_bytes(b'{"status": "fin\xe9"}'), "status",
                              "status.json is damaged"),
    "status.json not JSON": (lambda run: run.status_path.write_text("{status"), "status", "status.json is damaged"),
    "status.json a list": (lambda run: run.status_path.write_text("[]"), "status", "not a JSON object"),
    "status.json unknown status": (lambda run: _edit_json(run.status_path, '"finished"', '"paused"'), "status",
                                   "unknown status 'paused'"),
    "status.json pid as text": (lambda run: _edit_json(run.status_path, '"status": "finished"',
                                                       '"status": "running", "pid": "12"'), "status",
                                "field 'pid' is '12', not a number"),
    "status.json time garbage": (lambda run: _edit_json(run.status_path, '"2026-11-21T10:00:00+00:00"', '"soon"'),
                                 "status", "field 'started' is 'soon', not a time"),
    "config.json not UTF-8": (lambda run: run.config_path.write_bytes(b'{"name": "\xff"}'), "training_config",
                              "config.json is damaged"),
    "config.json a list": (lambda run: run.config_path.write_text("[1]"), "training_config", "not a JSON object"),
    "config.json section as text": (lambda run: run.config_path.write_text(json.dumps(run.config() | {"data": "x"})),
                                    "training_config", "data: must be an object, got str"),
    "config.json eps as text": (lambda run: _edit_json(run.config_path, '"eps": 0.1', '"eps": "0.1"'),
                                "training_config", "attack.eps: must be a number, got '0.1'"),
    "config.json unknown field": (lambda run: _edit_json(run.config_path, '"name":', '"colour": 1, "name":'),
                                  "training_config", "colour"),
    "history.csv a word among numbers": (lambda run: _set_history(run, "loss", ["1.0", "lots", "0.5"]), "history",
                                         "column 'loss', row 2: 'lots' is not a number"),
    "history.csv epochs repeat": (lambda run: _set_history(run, "epoch", [1, 2, 2]), "history",
                                  "the epochs do not count up from 1"),
    "history.csv binary": (lambda run: run.history_path.write_bytes(b"\xff\xfe\x00\x01" * 40), "history",
                           "history.csv is damaged"),
    "history.csv missing beside a model": (
        lambda run: (run.history_path.unlink(), run.model_path.write_bytes(b"model")), "history",
        "history.csv is missing, although the run has a model"),
}


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "0")
    return tmp_path / "runs"


def damaged_beside_a_good_one(root, case) -> tuple[Run, Run]:
    good = make_run(root, "good", ["vanilla", "vanilla", "adversarial"])
    broken = make_run(root, "broken", ["vanilla", "vanilla", "adversarial"])
    DAMAGE[case][0](broken)
    return good, broken


@pytest.mark.parametrize("case", DAMAGE)
def test_the_reader_names_the_file_and_the_reason(runs_root, case):
    good, broken = damaged_beside_a_good_one(runs_root, case)
    _, reader, words = DAMAGE[case]
    with pytest.raises(RunError, match=f"run {broken.id}: ") as raised:
        getattr(broken, reader)()
    assert words in str(raised.value)
    assert good.status()["status"] == "finished" and len(good.history()) == 3 and good.training_config()


@pytest.mark.parametrize("case", DAMAGE)
def test_every_page_works_beside_a_damaged_run_which_can_be_deleted(runs_root, case):
    good, broken = damaged_beside_a_good_one(runs_root, case)
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    app.query_params["run"] = broken.id  # the Train page shows it selected
    app.run()
    assert not app.exception, app.exception[0].value
    for name in ("train", "history", "playground"):
        app.switch_page(f"pages/{name}_page.py").run()
        assert not app.exception, (name, app.exception[0].value)
        if name == "train":
            table = app.dataframe[0].value.set_index("id")
            assert table.loc[good.id, "status"] == "finished" and table.loc[good.id, "epoch"] == 3
            assert table.loc[broken.id, "status"] == "damaged" and DAMAGE[case][2] in table.loc[broken.id, "problem"]
            assert any(DAMAGE[case][2] in shown(error.value) for error in app.error)
    jobs.delete(broken)
    assert [run.id for run in list_runs(runs_root)] == [good.id]


def test_a_damaged_run_never_holds_up_the_queue(runs_root, monkeypatch):
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "1")
    damaged_beside_a_good_one(runs_root, "status.json not UTF-8")
    waiting = Run.create({"name": "waiting", "schedule": {"epochs": 1}}, runs_root)
    (started,), busy = scheduler.start_queued(runs_root, echo=lambda line: None)
    try:
        assert busy and waiting.status()["pid"] == started.pid
    finally:
        started.kill()
        started.wait()


def test_a_run_whose_dataset_moved_is_still_readable(runs_root, tmp_path):
    run = make_run(runs_root, "moved", ["vanilla"])
    _edit_json(run.config_path, '"dataset": "fashion_mnist"', f'"dataset": "{tmp_path / "gone"}"')
    assert run.training_config()["data"]["dataset"].endswith("gone")
    assert isinstance(run.history(), pd.DataFrame)
