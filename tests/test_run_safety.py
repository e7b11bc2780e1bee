"""Resuming never loses a run: damaged or finished runs are refused with the reason and left byte for byte
as they were; one process per run; a finished run can be extended. Real `python -m advcore` processes."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import wait_for

from advcore.storage.runs import Run, list_runs

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--train-size", "640", "--validation-size", "200", "--robust-val-size", "50", "--robust-steps", "2",
        "--batch-size", "128", "--attack", "fgsm_rs", "--seed", "1"]


def advcore(*args, check=False):
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "advcore", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=check)


def fingerprint(folder: Path) -> dict:
    """Every file of a run folder and its content's digest (the lock file aside: it holds the last owner's pid)."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != "owner.lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Run:
    """A finished two-epoch run, trained once; tests damage copies of it."""
    runs = tmp_path_factory.mktemp("finished") / "runs"
    advcore("train", "--runs-dir", str(runs), "--epochs", "2", *TINY, check=True)
    (run,) = list_runs(runs)
    assert run.status()["status"] == "finished" and len(run.history()) == 2
    return run


@pytest.fixture
def copy(finished, tmp_path) -> Run:
    shutil.copytree(finished.path, tmp_path / "runs" / finished.id)
    return Run.open(finished.id, tmp_path / "runs")


def resume(run: Run, *flags):
    return advcore("train", "--resume", run.id, "--runs-dir", str(run.root), *flags)


DAMAGE = {
    "finished, no more epochs asked": (lambda run: None, "finished all its 2 epochs: to train it further"),
    "checkpoints deleted": (lambda run: shutil.rmtree(run.checkpoint_dir),
                            "history.csv has 2 epochs but checkpoints/ holds no complete checkpoint"),
    "history.csv deleted": (lambda run: run.history_path.unlink(),
                            "history.csv is missing, although the run has a model"),
    "history.csv and checkpoints deleted": (
        lambda run: (run.history_path.unlink(), shutil.rmtree(run.checkpoint_dir)),
        "history.csv is missing, although the run has a model"),
    "history.csv header only, no checkpoints": (
        lambda run: (run.history_path.write_text(run.history_path.read_text().splitlines()[0] + "\n"),
                     shutil.rmtree(run.checkpoint_dir)),
        "it has a model but no epoch in history.csv and no checkpoint"),
    "history.csv header only, checkpoints kept": (
        lambda run: run.history_path.write_text(run.history_path.read_text().splitlines()[0] + "\n"),
        "its checkpoints (epochs 1, 2) have no matching rows in history.csv"),
    "history.csv binary garbage": (lambda run: run.history_path.write_bytes(b"\x00\xff\xfe" * 50), "history.csv"),
    "history.csv epochs not numbers": (
        lambda run: run.history_path.write_text(run.history_path.read_text().replace("\n1,", "\none,")
                                                .replace("\n2,", "\ntwo,")),
        "history.csv is damaged (column 'epoch', row 1: 'one' is not a number)"),
    "status.json not UTF-8": (lambda run: run.status_path.write_bytes(b'{"status": "fin\xe9"}'),
                              "status.json is damaged"),
    "status.json not JSON": (lambda run: run.status_path.write_text("{status: finished"), "status.json is damaged"),
    "status.json unknown status": (lambda run: run.status_path.write_text('{"status": "paused"}'),
                                   "unknown status 'paused'"),
    "config.json a list": (lambda run: run.config_path.write_text("[]"), "config.json is damaged"),
}


CLI_CASES = ("finished, no more epochs asked", "checkpoints deleted", "history.csv binary garbage",
             "status.json not JSON")  # through a real process; every case runs in-process further down


@pytest.mark.parametrize("case", CLI_CASES)
def test_a_resume_that_would_lose_work_is_refused_and_changes_nothing(copy, case):
    damage, message = DAMAGE[case]
    damage(copy)
    before = fingerprint(copy.path)
    result = resume(copy)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert fingerprint(copy.path) == before


def test_fewer_epochs_than_trained_is_refused(copy):
    before = fingerprint(copy.path)
    result = resume(copy, "--epochs", "1")
    assert result.returncode == 2 and "has trained 2 epochs, more than the 1 asked" in result.stderr
    assert fingerprint(copy.path) == before


def test_other_flags_with_resume_are_refused_by_name(copy):
    result = resume(copy, "--epochs", "3", "--lr", "0.1")
    assert result.returncode == 2 and "only --epochs or --cycles may lengthen it); drop --lr" in result.stderr


def test_a_finished_run_is_extended_from_its_last_checkpoint(copy):
    rows_before = copy.history()
    result = resume(copy, "--epochs", "3")
    assert result.returncode == 0, result.stderr
    history = copy.history()
    assert list(history["epoch"]) == [1, 2, 3]
    assert history.iloc[:2].equals(rows_before)  # the finished epochs are kept as they were
    assert copy.config()["schedule"]["epochs"] == 3 and copy.status()["status"] == "finished"
    assert "resuming" in copy.log_tail() and "after epoch 2" in copy.log_tail()


def test_a_second_process_on_a_live_run_is_refused_with_its_pid(tmp_path):
    runs = tmp_path / "runs"
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    live = subprocess.Popen([sys.executable, "-m", "advcore", "train", "--runs-dir", str(runs), "--epochs",
                             "until-stopped", *TINY], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        run = wait_for(lambda: list_runs(runs), 60)[0]
        wait_for(lambda: len(run.history()) >= 1, 240)
        result = resume(run)
        assert result.returncode == 2
        assert f"is being trained by process {live.pid}: one process per run" in result.stderr
        assert live.poll() is None and run.status()["status"] == "running" and run.status()["pid"] == live.pid
        epochs = len(run.history())
        wait_for(lambda: len(run.history()) > epochs, 240)  # the live run goes on undisturbed
    finally:
        live.send_signal(signal.SIGINT)
        live.wait(120)
    assert run.status()["status"] == "stopped"


@pytest.fixture
def full_disk(tmp_path):
    """A 200 KB tmpfs: room for a run's small files, not for its first checkpoint (root only)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_ends_in_one_line_and_a_failed_run(full_disk):
    result = advcore("train", "--runs-dir", str(full_disk / "runs"), "--epochs", "2", *TINY)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith("error: No space left on device: free space or fix the permissions of the runs folder; "
                         "a run keeps every finished epoch, and --resume continues it")
    (run,) = list_runs(full_disk / "runs")
    assert run.status()["status"] == "failed" and "No space left on device" in run.status()["error"]


@pytest.mark.parametrize("case", DAMAGE)
def test_the_pages_resume_refuses_what_the_cli_refuses_and_changes_nothing(copy, case):
    from advcore.jobs import scheduler
    from advcore.storage.runs import RunError
    from advcore.training.config import ConfigError

    damage, message = DAMAGE[case]
    damage(copy)
    before = fingerprint(copy.path)
    with pytest.raises((RunError, ConfigError)) as refused:
        scheduler.requeue(copy)
    assert message in str(refused.value)
    assert fingerprint(copy.path) == before


def test_a_finished_run_extended_from_the_page_is_trained_on_by_the_scheduler(copy, monkeypatch):
    from advcore.jobs import scheduler

    scheduler.requeue(copy, more=1)
    status = copy.status()
    assert status["status"] == "queued" and "pid" not in status and copy.config()["schedule"]["epochs"] == 3
    monkeypatch.setenv(scheduler.MAX_RUNS_ENV, "1")
    (process,), _ = scheduler.start_queued(copy.root)
    assert process.wait(300) == 0
    assert copy.status()["status"] == "finished" and list(copy.history()["epoch"]) == [1, 2, 3]
