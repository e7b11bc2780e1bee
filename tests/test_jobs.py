"""The app's job control with real training processes."""

import os
import signal

import pytest
from helpers import wait_for

from advcore.storage.runs import RunError
from advcore.training.config import TrainConfig
from app import jobs


def tiny(name: str, epochs=1) -> TrainConfig:
    return TrainConfig.from_dict({"name": name, "batch_size": 64, "attack": {"method": "fgsm"},
                                  "data": {"train_size": 640, "validation_size": 200},
                                  "validation": {"robust_size": 50, "steps": 2},
                                  "schedule": {"kind": "constant", "epochs": epochs}})


def wait_until(predicate, timeout=180, root=None):
    """Waits as a page would: refreshing the job queue at every poll."""
    wait_for(lambda: jobs.refresh(root) or predicate(), timeout, interval=0.2)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "1")
    return tmp_path / "runs"


def test_runs_queue_behind_the_limit_and_all_finish(root):
    first = jobs.submit(tiny("first"), root)
    second = jobs.submit(tiny("second"), root)
    assert "pid" in first.status() and second.status()["status"] == "queued" and "pid" not in second.status()
    wait_until(lambda: first.status()["status"] == "finished" and second.status()["status"] == "finished",
               root=root)
    assert len(second.history()) == 1


def test_stop_a_queued_run_and_a_running_one(root):
    running = jobs.submit(tiny("long", epochs=1000), root)
    waiting = jobs.submit(tiny("waiting"), root)
    assert jobs.stop(waiting) == "stopped" and waiting.status()["status"] == "stopped"
    wait_until(lambda: len(running.history()) >= 1, root=root)
    assert jobs.stop(running) == "stopping"
    wait_until(lambda: running.status()["status"] == "stopped", root=root)
    with pytest.raises(RunError, match="not running"):
        jobs.stop(running)


def test_a_killed_process_shows_failed_with_its_log_and_can_be_deleted(root):
    run = jobs.submit(tiny("doomed", epochs=1000), root)
    wait_until(lambda: "epoch    1" in run.log_tail(), root=root)  # the epoch line follows its history row
    with pytest.raises(RunError, match="stop it before deleting"):
        jobs.delete(run)
    os.kill(run.status()["pid"], signal.SIGKILL)
    wait_until(lambda: run.status()["status"] == "failed", root=root)
    assert "ended without reporting" in run.status()["error"]
    assert "epoch    1" in run.log_tail()
    run.rename("renamed")
    assert run.name() == "renamed"
    jobs.delete(run)
    assert not run.path.exists()
