"""Evaluations as background jobs: a real worker process, stops, kills, results kept with runs."""

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from helpers import kill_worker, wait_for, worker_pid

from advcore.evaluation import plans, worker
from advcore.storage.runs import Run
from app import jobs

ROOT = Path(__file__).resolve().parents[1]
ROBUST = ROOT / "assets" / "models" / "pgd-linf" / "model.keras"


def plan(path, count=200, attacks=None, run=None) -> plans.Plan:
    return plans.Plan.from_dict({
        "models": [{"label": "robust", "path": str(path), "run": run}],
        "attacks": attacks or [{"name": "fgsm", "method": "fgsm", "options": {}}],
        "eps": {"linf": [0.05, 0.1]}, "count": count, "batch_size": 100})


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "runs"
    yield root
    kill_worker(root)


def test_results_are_saved_with_the_models_run_and_the_worker_is_reused(root):
    run = Run.create({"name": "trained"}, root, "trained")
    shutil.copyfile(ROBUST, run.model_path)
    run.update_status(status="finished")
    first = jobs.submit_evaluation(plan(run.model_path, run=run.id), root, "first")
    wait_for(lambda: first.status()["status"] == "finished")
    saved = json.loads((run.path / "evaluations" / f"{first.id}.json").read_text())
    assert [cell["eps"] for cell in saved["cells"]] == [0.05, 0.1] and first.name() == "first"
    pid = worker_pid(root)
    second = jobs.submit_evaluation(plan(ROBUST), root, "second")
    wait_for(lambda: second.status()["status"] == "finished", timeout=30)
    assert worker_pid(root) == pid and second.status()["pid"] == pid  # the warm worker took it
    assert [job.id for job in jobs.list_evaluations(root)] == [second.id, first.id]


def test_stopping_a_running_evaluation_keeps_its_finished_cells(root):
    slow = [{"name": "fgsm", "method": "fgsm", "options": {}},
            {"name": "pgd", "method": "pgd", "options": {"steps": 20}}]
    job = jobs.submit_evaluation(plan(ROBUST, count=3000, attacks=slow), root)
    results = job.path / "results.json"
    wait_for(lambda: results.exists() and len(json.loads(results.read_text())["cells"]) >= 2)
    assert jobs.stop_evaluation(job) == "stopping"
    wait_for(lambda: job.status()["status"] == "stopped", timeout=60)
    cells = json.loads(results.read_text())["cells"]
    assert 2 <= len(cells) < 4 and [c["attack"] for c in cells[:2]] == ["fgsm", "fgsm"]


def test_a_killed_worker_fails_its_job_and_a_new_worker_takes_the_next(root):
    job = jobs.submit_evaluation(plan(ROBUST, count=5000, attacks=[
        {"name": "pgd", "method": "pgd", "options": {"steps": 40}}]), root)
    wait_for(lambda: job.status()["status"] == "running")
    os.kill(worker_pid(root), signal.SIGKILL)
    wait_for(lambda: job.status()["status"] == "failed", timeout=10)
    assert "ended without reporting" in job.status()["error"]
    queued = jobs.submit_evaluation(plan(ROBUST), root)  # starts a fresh worker
    wait_for(lambda: queued.status()["status"] == "finished")


def test_a_queued_evaluation_stops_at_once(root):
    job = worker.submit(plan(ROBUST), root)  # queued, no worker started
    assert jobs.stop_evaluation(job) == "stopped" and job.status()["status"] == "stopped"


def test_a_profile_job_stops_at_its_next_report_and_saves_nothing(root):
    from advcore.evaluation import profile

    settings = profile.ProfileSettings(count=100, ara_steps=450)  # minutes of work: the stop lands in AutoAttack
    folder = profile.folder_for(worker.profiles_root(root), ROBUST, settings)
    job = jobs.submit_profile(ROBUST, "fashion_mnist", settings.to_dict(), folder, root)
    assert jobs.profile_job(folder, root).id == job.id and jobs.list_evaluations(root) == []  # not the Evaluate page's
    wait_for(lambda: job.progress().get("cell", "").startswith("AutoAttack: "), timeout=240)  # a member done
    assert jobs.stop_evaluation(job) == "stopping"
    wait_for(lambda: job.status()["status"] == "stopped", timeout=120)
    assert job.progress()["cell"] in [f"AutoAttack: {member} done" for member in ("apgd-ce", "apgd-t", "fab-t")]
    assert profile.load(folder) is None
