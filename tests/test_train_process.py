"""`python -m advcore train` as a real subprocess: stop, kill, resume, and two devices."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import free_port, wait_for

from advcore import models
from advcore.storage.runs import Run, list_runs

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--train-size", "1280", "--validation-size", "200", "--robust-val-size", "100", "--robust-steps", "2",
         "--batch-size", "128", "--attack", "fgsm_rs", "--seed", "3"]
INTERLEAVED = ["--schedule", "interleaved", "--vanilla-epochs", "2", "--adversarial-epochs", "1"]


def start(runs_dir, *args, log_name="out.log"):
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    Path(runs_dir).parent.mkdir(parents=True, exist_ok=True)
    log = open(Path(runs_dir).parent / log_name, "ab")
    return subprocess.Popen([sys.executable, "-m", "advcore", "train", "--runs-dir", str(runs_dir), *args],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def only_run(runs_dir) -> Run:
    return wait_for(lambda: list_runs(runs_dir), 60)[0]


def wait_for_epochs(run: Run, count: int, process, timeout: float = 240) -> None:
    def trained():
        assert process.poll() is None, run.log_tail()
        return len(run.history()) >= count

    wait_for(trained, timeout, 0.05, describe=lambda: f"with fewer than {count} epochs:\n{run.log_tail()}")


def check_history(run: Run, phases_of_cycle=("vanilla", "vanilla", "adversarial")) -> pd.DataFrame:
    """Epochs 1..n, no gap, each with its schedule's phase, each with a loadable checkpoint or pruned."""
    history = run.history()
    assert list(history["epoch"]) == list(range(1, len(history) + 1))
    assert list(history["phase"]) == [phases_of_cycle[i % 3] for i in range(len(history))]
    assert run.checkpoints() and run.checkpoints()[-1] >= len(history) - 1
    models.load(run.checkpoint_paths(run.checkpoints()[-1])[0])
    return history


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_keeps_every_epoch_and_resume_continues(tmp_path, sig):
    runs_dir = tmp_path / "runs"
    process = start(runs_dir, *SMALL, *INTERLEAVED)
    run = only_run(runs_dir)
    wait_for_epochs(run, random.randint(2, 4), process)
    time.sleep(random.uniform(0, 0.3))
    process.send_signal(sig)
    assert process.wait(timeout=120) == 0, run.log_tail()
    assert run.status()["status"] == "stopped"
    before = check_history(run)
    models.load(run.model_path)

    process = start(runs_dir, "--resume", run.id)
    wait_for_epochs(run, len(before) + 2, process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 0, run.log_tail()
    after = check_history(run)
    pd.testing.assert_frame_equal(after.iloc[:len(before)], before)
    assert "resuming" in run.log_tail(200)


def test_a_stop_request_in_its_folder_stops_a_run_that_no_signal_reaches(tmp_path):
    """How a process on another machine (a Ray job's) is stopped: the request is a file in the run's
    folder, read after a batch; the run stops as on SIGTERM, and queuing it again withdraws the request."""
    runs_dir = tmp_path / "runs"
    process = start(runs_dir, *SMALL, *INTERLEAVED)
    run = only_run(runs_dir)
    wait_for_epochs(run, 1, process)
    run.request_stop()
    assert process.wait(timeout=120) == 0, run.log_tail()
    status = run.status()
    assert status["status"] == "stopped" and status["signal"] == "stop request"
    check_history(run)
    run.queue_again()
    assert not run.stop_request_path.exists()


def test_sigkill_loses_no_finished_epoch_and_resume_matches_an_uninterrupted_run(tmp_path, fashion):
    """On a streamed folder (Fashion-MNIST images as PNG files): the files are read in the same order
    after a resume as in one uninterrupted run."""
    from advcore.storage import images

    folder = tmp_path / "fashion-png"
    for index, (image, label) in enumerate(zip(fashion.train.x[:1480], fashion.train.y[:1480])):
        (folder / f"class{label}").mkdir(parents=True, exist_ok=True)
        images.write_png(folder / f"class{label}" / f"{index:04d}.png", image)
    fixed = [*SMALL, *INTERLEAVED, "--cycles", "2", "--dataset", str(folder)]  # 6 epochs
    reference_dir = tmp_path / "reference" / "runs"
    process = start(reference_dir, *fixed)
    assert process.wait(timeout=300) == 0
    reference = only_run(reference_dir).history()

    runs_dir = tmp_path / "killed" / "runs"
    process = start(runs_dir, *fixed)
    run = only_run(runs_dir)
    wait_for_epochs(run, random.randint(2, 4), process)
    time.sleep(random.uniform(0, 0.3))
    process.kill()
    process.wait(timeout=60)
    status = run.status()
    assert status["status"] == "failed" and "ended without reporting" in status["error"]
    check_history(run)

    process = start(runs_dir, "--resume", run.id)
    assert process.wait(timeout=300) == 0, run.log_tail()
    resumed = check_history(run)
    assert run.status()["status"] == "finished" and len(resumed) == 6
    for column in ("loss", "accuracy", "val_loss", "val_accuracy", "val_robust_accuracy"):
        np.testing.assert_allclose(resumed[column], reference[column], rtol=1e-4, atol=1e-5, err_msg=column)


@pytest.mark.parametrize("training", [["--attack", "fgsm"],
                                      ["--attack", "fgsm", "--objective", "mart", "--awp"]])
def test_two_logical_devices_match_one(tmp_path, training):
    """Mirrored over two CPU devices splits each batch in two; the averaged gradient is the same (with
    AWP, every replica perturbs the weights along the gradient summed over replicas). The attacks draw
    no random start here: a start drawn per replica's half-batch would differ from the whole batch's."""
    histories = {}
    for strategy in ("default", "mirrored"):
        runs_dir = tmp_path / strategy / "runs"
        args = [*SMALL[:-4], *training, "--epochs", "2", "--cpu-devices", "2", "--strategy", strategy]
        process = start(runs_dir, *args)
        assert process.wait(timeout=300) == 0, only_run(runs_dir).log_tail()
        run = only_run(runs_dir)
        histories[strategy] = run.history()
        replicas = "2 replicas" in run.status()["device"]
        assert replicas == (strategy == "mirrored")
    for column in ("loss", "accuracy", "val_loss", "val_accuracy"):  # accuracy: a prediction or two may flip
        np.testing.assert_allclose(histories["mirrored"][column], histories["default"][column], rtol=2e-3,
                                   atol=2.5e-3 if "accuracy" in column else 0, err_msg=column)


def test_two_workers_train_one_run_and_resume_it(tmp_path):
    """MultiWorkerMirroredStrategy with two local processes: worker 0 alone writes the run, also when
    they resume it (the other resumes from a private copy, and removes only that)."""
    runs_dir = tmp_path / "runs"
    neighbour = Run.create({"name": "untouched"}, runs_dir, "neighbour")

    def two_workers(*args, log: str) -> None:
        cluster = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
        workers = []
        for index in range(2):
            tf_config = json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})
            os.environ["TF_CONFIG"] = tf_config
            try:
                workers.append(start(runs_dir, *args, log_name=f"{log}{index}.log"))
            finally:
                del os.environ["TF_CONFIG"]
        assert [w.wait(timeout=300) for w in workers] == [0, 0], (tmp_path / f"{log}0.log").read_text()[-3000:]

    two_workers(*SMALL[:-4], "--attack", "fgsm", "--epochs", "1", "--strategy", "multi_worker", log="first")
    [run] = [run for run in list_runs(runs_dir) if run.id != neighbour.id]
    assert run.status()["status"] == "finished" and "2 replicas on 2 workers" in run.status()["device"]
    two_workers("--resume", run.id, "--epochs", "2", log="resumed")  # the config's strategy: multi_worker
    assert sorted(r.id for r in list_runs(runs_dir)) == sorted([run.id, neighbour.id]) and neighbour.path.is_dir()
    assert run.status()["status"] == "finished" and list(run.history()["epoch"]) == [1, 2]
    assert run.status()["resumed"]  # written by the chief, into the run itself


def test_invalid_config_fails_before_any_work(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "advcore", "train", "--runs-dir", str(tmp_path / "runs"),
                           "--eps", "-1"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 2 and "attack.eps: must be a finite number >= 0" in done.stderr
    assert not (tmp_path / "runs").exists()
    done = subprocess.run([sys.executable, "-m", "advcore", "train", "--runs-dir", str(tmp_path / "runs"),
                           "--resume", "../../etc"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 2 and "invalid run id" in done.stderr


def test_mixed_precision_keeps_logits_and_attacks_in_float32(tmp_path):
    runs_dir = tmp_path / "runs"
    process = start(runs_dir, *SMALL[:-4], "--attack", "pgd", "--attack-steps", "2", "--epochs", "1",
                    "--mixed-precision")
    assert process.wait(timeout=300) == 0, only_run(runs_dir).log_tail()
    model = models.load(only_run(runs_dir).model_path)
    assert model.layers[1].dtype_policy.compute_dtype == "float16"
    assert model.layers[-1].dtype_policy.compute_dtype == "float32" and model.output.dtype == "float32"
    assert len(only_run(runs_dir).history()) == 1
