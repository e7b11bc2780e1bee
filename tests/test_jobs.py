"""The app's job control with real processes: the training scheduler and each run's own process.
Nothing here polls the queue as a page would: the scheduler moves it with no page open."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import kill_scheduler, wait_for

from advcore import devices
from advcore.jobs import scheduler
from advcore.storage import locks
from advcore.storage.runs import Run, RunError
from advcore.training.config import TrainConfig
from app import jobs

ROOT = Path(__file__).resolve().parents[1]


def tiny(name: str, epochs=1) -> TrainConfig:
    return TrainConfig.from_dict({"name": name, "batch_size": 64, "attack": {"method": "fgsm"},
                                  "data": {"train_size": 640, "validation_size": 200},
                                  "validation": {"robust_size": 50, "steps": 2},
                                  "schedule": {"kind": "constant", "epochs": epochs}})


def wait_until(predicate, timeout=180):
    wait_for(predicate, timeout, interval=0.2)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "1")
    yield tmp_path / "runs"
    kill_scheduler(tmp_path / "runs")


def scheduler_pid(root) -> int:
    return wait_for(lambda: locks.holder(scheduler.lock_path(root)), 30)


def test_runs_queue_behind_the_limit_and_all_finish(root):
    first = jobs.submit(tiny("first"), root)
    second = jobs.submit(tiny("second"), root)
    wait_until(lambda: "pid" in first.status(), 30)  # started within seconds, by the scheduler alone
    assert second.status()["status"] == "queued" and "pid" not in second.status()
    wait_until(lambda: first.status()["status"] == "finished" and second.status()["status"] == "finished")
    assert len(second.history()) == 1


def test_stop_a_queued_run_and_a_running_one(root):
    running = jobs.submit(tiny("long", epochs=1000), root)
    waiting = jobs.submit(tiny("waiting"), root)
    assert jobs.stop(waiting) == f"run {waiting.id} stopped" and waiting.status()["status"] == "stopped"
    wait_until(lambda: len(running.history()) >= 1)
    assert jobs.stop(running) == f"run {running.id} stopping after its current batch"
    wait_until(lambda: running.status()["status"] == "stopped")
    with pytest.raises(RunError, match="not running"):
        jobs.stop(running)


def test_a_run_on_another_machine_is_asked_to_stop_through_its_folder(tmp_path):
    """No process of this machine is signalled for it: the request waits in the run's folder for its
    process (`test_train_process` shows a process reading it)."""
    run = Run.create(tiny("remote").to_dict(), tmp_path / "runs")
    run.update_status(status="running", pid=os.getpid(), host="gpu-node-7", job=f"{run.id}--0a1b2c3d")
    assert jobs.stop(run).startswith(f"run {run.id} asked to stop through its folder: its process on gpu-node-7")
    assert run.stop_request_path.exists() and run.status()["status"] == "running"  # the process says when it stops
    queued = Run.create(tiny("submitted").to_dict(), tmp_path / "runs")
    queued.update_status(job=f"{queued.id}--0a1b2c3d")  # a Ray job not yet begun: it stops at its first batch
    assert jobs.stop(queued) == f"run {queued.id} stopped"
    assert queued.stop_request_path.exists() and queued.status()["status"] == "stopped"


def test_on_a_cluster_the_run_is_not_judged_by_this_machines_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_GPUS", "none")
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "0")  # no scheduler: only the submission is tested
    config = TrainConfig.from_dict(tiny("on-the-cluster").to_dict() | {"distribute": {"gpus": 2}})
    with pytest.raises(devices.DeviceError, match="asks for 2 GPUs"):
        jobs.submit(config, tmp_path / "runs")
    monkeypatch.setenv("ADVLAB_CLUSTER", "10.0.0.5:6379")
    run = jobs.submit(config, tmp_path / "runs")  # the cluster's scheduler judges it against its nodes
    assert run.status()["status"] == "queued"


def test_a_killed_process_shows_failed_with_its_log_and_can_be_deleted(root):
    run = jobs.submit(tiny("doomed", epochs=1000), root)
    wait_until(lambda: "epoch    1" in run.log_tail())  # the epoch line follows its history row
    with pytest.raises(RunError, match="stop it before deleting"):
        jobs.delete(run)
    os.kill(run.status()["pid"], signal.SIGKILL)
    wait_until(lambda: run.status()["status"] == "failed")
    assert "ended without reporting" in run.status()["error"]
    assert "epoch    1" in run.log_tail()
    run.rename("renamed")
    assert run.name() == "renamed"
    jobs.delete(run)
    assert not run.path.exists()


def test_the_scheduler_runs_in_its_own_session_and_is_started_again_when_it_died(root):
    long = jobs.submit(tiny("long", epochs=1000), root)
    short = jobs.submit(tiny("short"), root)
    first_scheduler = scheduler_pid(root)
    assert os.getsid(first_scheduler) != os.getsid(0)  # the server's end (its process group) never reaches it
    wait_until(lambda: len(long.history()) >= 1)
    os.kill(first_scheduler, signal.SIGKILL)
    jobs.stop(long)
    wait_until(lambda: short.status()["status"] == "finished")  # the server's watcher started a new scheduler
    assert scheduler_pid(root) != first_scheduler


def test_the_cli_scheduler_trains_a_queue_alone_and_a_second_one_is_refused(tmp_path):
    runs = tmp_path / "runs"
    queued = [Run.create(tiny(name).to_dict(), runs, name) for name in ("a", "b")]
    env = os.environ | {"PYTHONPATH": str(ROOT), "ADVLAB_MAX_RUNS": "1"}
    command = [sys.executable, "-m", "advcore", "scheduler", "--runs-dir", str(runs), "--idle-exit", "2"]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: locks.holder(scheduler.lock_path(runs)), 30)
        second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"a scheduler already serves {runs} (pid {first.pid})" in second.stderr
        output, _ = first.communicate(timeout=300)  # it exits by itself once the queue is done
    finally:
        first.kill()
    assert first.returncode == 0, output
    assert [run.status()["status"] for run in queued] == ["finished", "finished"]
    assert output.count("started ") == 2 and "exits: idle" in output
