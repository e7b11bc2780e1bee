"""The Ray executor against a real Ray head on 127.0.0.1 (2 CPUs), started here and stopped by its pid:
runs submitted from the CLI and by the scheduler train as Ray jobs, a killed job fails its run with
the log's tail and resume finishes it, and a cluster that cannot take the runs says why in one line."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advcore import models
from advcore.evaluation import plans, profile
from advcore.interpret import alignment
from advcore.jobs import cluster
from advcore.jobs import scheduler as scheduler_module
from advcore.storage import data
from advcore.storage.runs import Run, list_runs
from advcore.training.config import TrainConfig
from app import jobs
from app.evaluate import evaluation_views
from helpers import kill_worker
from helpers import wait_for as wait_until

pytest.importorskip("ray", reason="the cluster tests need requirements-cluster.txt (tests/setup.sh installs it)")
from ray.job_submission import JobStatus, JobSubmissionClient  # noqa: E402

from advcore.jobs.local_head import free_port, local_head  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--mode", "vanilla", "--train-size", "512", "--validation-size", "128", "--batch-size", "128", "--seed", "3"]
ENV = {key: value for key, value in os.environ.items() if not key.startswith(("RAY_", "ADVLAB_"))} | {
    "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def head():
    """A Ray head of 2 CPUs on 127.0.0.1 (`advcore.jobs.local_head`); yields its address."""
    with local_head(cpus=2, env=ENV) as address:
        yield address


THREE_EPOCHS = {"mode": "vanilla", "schedule": {"kind": "constant", "epochs": 3}, "batch_size": 128, "seed": 3,
                "data": {"train_size": 512, "validation_size": 128}}


@contextlib.contextmanager
def serving(log: Path, *args):
    """`python -m advcore scheduler ARGS` while the block runs."""
    scheduler = subprocess.Popen([sys.executable, "-m", "advcore", "scheduler", "--idle-exit", "600", *args], cwd=ROOT,
                                 env=ENV, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=60)


def advcore(*args, timeout=180, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advcore", *args], cwd=ROOT, env=ENV | env, capture_output=True,
                          text=True, timeout=timeout)


def wait_for(run: Run, statuses: tuple[str, ...], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run.recorded_status()
        if status["status"] in statuses:
            return status
        time.sleep(0.5)
    raise AssertionError(f"run {run.id} still {run.recorded_status()} after {timeout} s:\n{run.log_tail()}")


def job_end(client: JobSubmissionClient, job: str, timeout: float = 60) -> JobStatus:
    """The job's final status (its process may still be exiting when its run has finished)."""
    deadline = time.monotonic() + timeout
    while not (status := client.get_job_status(job)).is_terminal() and time.monotonic() < deadline:
        time.sleep(0.2)
    return status


def test_a_run_given_cluster_trains_as_a_ray_job(head, tmp_path):
    runs = tmp_path / "runs"
    done = advcore("train", "--cluster", head, "--runs-dir", str(runs), *SMALL, "--epochs", "1", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["job"].startswith(answer["run"] + "--") and answer["dashboard"].startswith("http://127.0.0.1:")
    run = Run.open(answer["run"], runs)
    status = wait_for(run, ("finished", "failed"))
    assert status["status"] == "finished", run.log_tail()
    assert status["job"] == answer["job"] and status["cluster"] == head and status["host"] == socket.gethostname()
    assert list(run.history()["epoch"]) == [1] and run.model_path.exists()
    client = JobSubmissionClient(answer["dashboard"])
    assert job_end(client, answer["job"]) == JobStatus.SUCCEEDED
    assert "-m advcore train --resume " + run.id in client.get_job_info(answer["job"]).entrypoint
    assert not list((runs / "_cluster_probe").iterdir())  # the connection's check leaves nothing


def test_the_scheduler_submits_a_queued_run_fails_it_when_killed_and_resume_finishes_it(head, tmp_path):
    runs = tmp_path / "runs"
    with serving(tmp_path / "scheduler.log", "--cluster", head, "--runs-dir", str(runs)):
        run = Run.create(TrainConfig.from_dict(THREE_EPOCHS).to_dict(), runs, "killed")  # as the Train page does
        status = wait_for(run, ("running",), timeout=180)
        described = cluster.read_state(runs)  # what the Train page shows of the cluster
        assert described["address"] == head and [node["host"] for node in described["nodes"]] == [socket.gethostname()]
        assert described["total_cpus"] == 2 and described["dashboard"].startswith("http://127.0.0.1:")
        first_job = status["job"]
        while len(run.history()) < 1:  # one epoch saved, then the process dies mid-run
            time.sleep(0.2)
        os.kill(wait_for(run, ("running",))["pid"], signal.SIGKILL)
        status = wait_for(run, ("failed",), timeout=120)
        assert first_job in status["error"] and "failed" in status["error"]
        kept = len(run.history())
        scheduler_module.requeue(run)  # as the page's Resume does
        status = wait_for(run, ("finished", "failed"), timeout=240)
        assert status["status"] == "finished", run.log_tail()
        assert status["job"] != first_job and status["job"].startswith(run.id + "--")
        assert list(run.history()["epoch"]) == [1, 2, 3] and kept >= 1
    assert f"Ray cluster at {head}" in (tmp_path / "scheduler.log").read_text()


def test_a_ray_run_stopped_from_the_app_keeps_its_epochs_and_resumes_as_a_new_job(head, tmp_path):
    runs = tmp_path / "runs"
    done = advcore("train", "--cluster", head, "--runs-dir", str(runs), *SMALL, "--train-size", "2048",
                   "--epochs", "4", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    first_job = json.loads(done.stdout.strip().splitlines()[-1])["job"]
    run = Run.open(first_job.split("--")[0], runs)
    deadline = time.monotonic() + 180
    while len(run.history()) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert jobs.stop(run) == f"run {run.id} stopping after its current batch"
    status = wait_for(run, ("stopped", "finished", "failed"))
    assert status["status"] == "stopped", run.log_tail()
    kept = run.history()
    done = advcore("train", "--cluster", head, "--runs-dir", str(runs), "--resume", run.id, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    second_job = json.loads(done.stdout.strip().splitlines()[-1])["job"]
    status = wait_for(run, ("finished", "failed"))
    assert status["status"] == "finished" and status["job"] == second_job != first_job, run.log_tail()
    assert list(run.history()["epoch"]) == [1, 2, 3, 4]
    assert run.history().iloc[:len(kept)]["loss"].tolist() == kept["loss"].tolist()


def test_a_run_stopped_while_its_job_waits_trains_nothing_when_the_job_begins(head, tmp_path):
    runs = tmp_path / "runs"
    done = advcore("train", "--cluster", head, "--runs-dir", str(runs), *SMALL, "--epochs", "1", timeout=120)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    run = Run.open(answer["run"], runs)
    assert jobs.stop(run) == f"run {run.id} stopped"  # its process is still starting: the run is queued
    client = JobSubmissionClient(answer["dashboard"])
    assert job_end(client, answer["job"]) == JobStatus.SUCCEEDED
    logs = client.get_job_logs(answer["job"])  # stopped before its process began, or at its first batch
    assert f"nothing to do: run {run.id} is stopped" in logs or "stop request: finishing the current batch" in logs
    assert run.recorded_status()["status"] == "stopped" and not len(run.history())


def autoattack_plan(path: Path) -> Path:
    """A plan whose AutoAttack runs all four components on some images: the standard model at 0.04
    leaves about 8% to APGD-T, FAB-T and Square."""
    path.write_text(json.dumps({
        "models": [{"label": "standard", "path": str(ROOT / "assets" / "models" / "standard" / "model.keras")}],
        "attacks": [{"name": "AutoAttack", "method": "autoattack", "options": {"version": "standard"}}],
        "eps": {"linf": [0.04]}, "count": 200, "batch_size": 100}))
    return path


def test_a_sharded_autoattack_equals_the_unsharded_one_image_for_image(head, tmp_path):
    plan_file = autoattack_plan(tmp_path / "plan.json")
    done = advcore("evaluate", "--plan", str(plan_file), "--out", str(tmp_path / "sharded"), "--cluster", head,
                   "--shards", "4", timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 shards" in done.stdout
    plans.run_plan(plans.Plan.from_dict(json.loads(plan_file.read_text())), tmp_path / "whole")
    whole, sharded = (pd.read_csv(tmp_path / name / plans.IMAGES_FILE, keep_default_na=False)
                      for name in ("whole", "sharded"))
    pd.testing.assert_frame_equal(whole, sharded)
    assert len(sharded) == 200 and {"apgd-ce", "apgd-t", ""} <= set(sharded["broken_by"])
    cells = [json.loads((tmp_path / name / "results.json").read_text())["cells"] for name in ("whole", "sharded")]
    assert [{k: v for k, v in cell.items() if k != "seconds"} for cell in cells[0]] == \
        [{k: v for k, v in cell.items() if k != "seconds"} for cell in cells[1]]


def test_the_worker_on_a_cluster_runs_an_evaluation_and_a_profile_in_shards_equal_to_the_whole(
        head, tmp_path, monkeypatch):
    root, model_file = tmp_path / "runs", ROOT / "assets" / "models" / "pgd-linf" / "model.keras"
    monkeypatch.setenv(cluster.CLUSTER_ENV, head)
    plan = plans.Plan.from_dict({
        "models": [{"label": "robust", "path": str(model_file)}],
        "attacks": [{"name": "pgd", "method": "pgd", "options": {"steps": 10}}], "eps": {"linf": [0.05, 0.1]},
        "count": 200, "batch_size": 100, "sanity": True})
    settings = profile.ProfileSettings(count=24, eps=(0.0, 0.1), pgd_steps=3, ara_steps=10, ara_batch=8, traversals=2)
    try:
        evaluation = jobs.submit_evaluation(plan, root, "sharded", shards=2)
        profiled = jobs.submit_profile(model_file, "fashion_mnist", settings.to_dict(), tmp_path / "profile", root)
        for job, labels in ((evaluation, ["images 0-99", "images 100-199", "robust / gradient-masking checks"]),
                            (profiled, ["images 0-15", "images 16-23", "class activations and traversals"])):
            seen = wait_until(lambda: job.progress().get("shards"), timeout=240, interval=0.2,
                              describe=lambda: f"{job.recorded_status()}: {job.log_tail()}")
            assert [shard["label"] for shard in seen] == labels
            assert len(evaluation_views.shard_lines(job.progress())) == 3
            wait_until(lambda: job.recorded_status()["status"] in ("finished", "failed"), timeout=300)
            assert job.recorded_status()["status"] == "finished", job.log_tail()
    finally:
        kill_worker(root)
    results = json.loads((evaluation.path / "results.json").read_text())
    assert [cell["eps"] for cell in results["cells"]] == [0.05, 0.1] and "robust" in results["sanity"]
    assert json.loads((root / "_evaluations" / "worker.json").read_text())["cluster"] == head
    assert len(pd.read_csv(evaluation.path / plans.IMAGES_FILE)) == 2 * 200
    model = models.load(model_file)
    profile.save(tmp_path / "whole", *profile.compute(
        model, data.load("fashion_mnist", image_size=models.input_size(model)), settings,
        judge=models.load(alignment.judge_path("fashion_mnist"))))
    whole, sharded = profile.load(tmp_path / "whole"), profile.load(tmp_path / "profile")
    assert sharded.figures == whole.figures
    pd.testing.assert_frame_equal(sharded.ara, whole.ara, check_exact=True)
    assert all(np.array_equal(sharded.pictures[name], whole.pictures[name]) for name in whole.pictures)


@pytest.mark.parametrize("address, message", [
    ("10.0.0.5", "give the Ray head's HOST:PORT"),
    ("127.0.0.1:{closed}", "no Ray cluster answers at 127.0.0.1:"),
])
def test_a_cluster_that_cannot_be_reached_is_one_line_and_no_run(tmp_path, address, message):
    address = address.format(closed=free_port())
    done = advcore("train", "--cluster", address, "--runs-dir", str(tmp_path / "runs"), *SMALL, timeout=120)
    assert done.returncode != 0 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    runs = tmp_path / "runs"
    assert not runs.exists() or not [path for path in runs.iterdir() if not path.name.startswith("_")]


def test_a_scheduler_that_cannot_connect_says_why_for_the_page(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    done = advcore("scheduler", "--cluster", address, "--runs-dir", str(tmp_path / "runs"), "--idle-exit", "0")
    assert done.returncode == 1 and f"no Ray cluster answers at {address}" in done.stderr
    assert cluster.read_state(tmp_path / "runs")["error"].startswith(f"no Ray cluster answers at {address}")


def test_without_ray_the_cluster_asks_for_its_install_and_local_runs_untouched(tmp_path):
    blocker = tmp_path / "no_ray" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    path = f"{blocker.parent}{os.pathsep}{ROOT}"
    done = advcore("train", "--cluster", "127.0.0.1:6379", "--runs-dir", str(tmp_path / "runs"), *SMALL,
                   PYTHONPATH=path)
    assert done.returncode == 1 and "Ray is not installed here: `pip install -r requirements-cluster.txt`" in done.stderr
    done = advcore("evaluate", "--plan", str(autoattack_plan(tmp_path / "plan.json")), "--out",
                   str(tmp_path / "out"), "--cluster", "127.0.0.1:6379", PYTHONPATH=path)
    assert done.returncode == 1 and "Ray is not installed here" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = advcore("scheduler", "--runs-dir", str(tmp_path / "runs"), "--idle-exit", "0", PYTHONPATH=path,
                   ADVLAB_CLUSTER="local")
    assert done.returncode == 0 and "1 run(s) at a time" in done.stdout


@pytest.fixture(scope="module")
def two_nodes():
    """Ray's own multi-node simulation (`ray.cluster_utils.Cluster`, as Ray's tests use it): a head with
    no CPU, so that runs and shards go to its two worker nodes of 1 CPU each. The nodes keep this
    machine's own address: given 127.0.0.1, a driver could not reach them (Ray turns a local head
    address into the machine's). The dashboard is on 127.0.0.1. Yields (cluster, its address)."""
    from ray.cluster_utils import Cluster

    def own_ports() -> dict:
        return {"dashboard_agent_listen_port": free_port(),
                "metrics_export_port": free_port(), "env_vars": ENV}

    simulated = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "num_gpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": free_port(), "gcs_server_port": free_port(), "ray_client_server_port": free_port(),
        **own_ports()})
    for _ in range(2):
        simulated.add_node(num_cpus=1, num_gpus=0, **own_ports())
    simulated.wait_for_nodes()
    yield simulated, simulated.address
    simulated.shutdown()


def test_on_two_nodes_shards_use_both_and_a_removed_nodes_run_fails_and_resumes_on_the_other(two_nodes, tmp_path):
    simulated, address = two_nodes
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({
        "models": [{"label": "standard", "path": str(ROOT / "assets" / "models" / "standard" / "model.keras")}],
        "attacks": [{"name": "pgd", "method": "pgd", "options": {"steps": 10}}], "eps": {"linf": [0.04]},
        "count": 200, "batch_size": 100}))
    done = advcore("evaluate", "--plan", str(plan_file), "--out", str(tmp_path / "sharded"), "--cluster", address,
                   "--shards", "2", timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    from ray.util import state

    workers = {node.node_id for node in simulated.worker_nodes}
    placed = {task.node_id for task in state.list_tasks(address=address, filters=[("func_or_class_name", "=", "_measure")])}
    assert placed == workers  # one shard on each node

    runs = tmp_path / "runs"
    with serving(tmp_path / "scheduler.log", "--cluster", address, "--runs-dir", str(runs)):
        run = Run.create(TrainConfig.from_dict(THREE_EPOCHS).to_dict(), runs, "moved")
        first_job = wait_for(run, ("running",), timeout=180)["job"]
        while len(run.history()) < 1:
            time.sleep(0.1)
        client = JobSubmissionClient(cluster.read_state(runs)["dashboard"])
        training_node = client.get_job_info(first_job).driver_node_id
        [node] = [node for node in simulated.worker_nodes if node.node_id == training_node]
        pid = run.recorded_status()["pid"]
        simulated.remove_node(node, allow_graceful=False)
        with contextlib.suppress(ProcessLookupError):  # a machine that is gone takes its processes with it
            os.kill(pid, signal.SIGKILL)
        failed = wait_for(run, ("failed",), timeout=120)
        assert first_job in failed["error"]
        kept = len(run.history())
        scheduler_module.requeue(run)  # as the page's Resume does
        status = wait_for(run, ("finished", "failed"), timeout=240)
        assert status["status"] == "finished", run.log_tail()
        assert status["job"] != first_job and client.get_job_info(status["job"]).driver_node_id != training_node
        assert list(run.history()["epoch"]) == [1, 2, 3] and kept >= 1


@pytest.mark.timeout(1500)  # six worker processes start TensorFlow: under a loaded suite, several minutes
def test_two_workers_under_ray_train_match_tf_config_killed_stopped_and_resumed(
        head, tmp_path):
    options = [*SMALL, "--train-size", "1024", "--attack", "fgsm", "--epochs", "3"]
    ports = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    by_hand = [subprocess.Popen([sys.executable, "-m", "advcore", "train", "--runs-dir", str(tmp_path / "by-hand"),
                                 *options, "--strategy", "multi_worker"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=ENV | {"TF_CONFIG": json.dumps(
                                    {"cluster": {"worker": ports}, "task": {"type": "worker", "index": index}})})
               for index in range(2)]
    assert [worker.wait(timeout=300) for worker in by_hand] == [0, 0]
    [reference] = list_runs(tmp_path / "by-hand")

    runs = tmp_path / "runs"
    done = advcore("train", "--cluster", head, "--runs-dir", str(runs), *options, "--workers", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    run = Run.open(json.loads(done.stdout.strip().splitlines()[-1])["run"], runs)
    status = wait_for(run, ("running",))
    first_job = status["job"]
    assert status["workers"] == 2
    while len(run.history()) < 1:  # an epoch saved; the chief (worker 0) dies in the next
        time.sleep(0.1)
    os.kill(run.recorded_status()["pid"], signal.SIGKILL)
    failed = wait_for(run, ("failed",), timeout=120)
    assert "a worker failed" in failed["error"], failed
    done = advcore("train", "--cluster", head, "--runs-dir", str(runs), "--resume", run.id)
    assert done.returncode == 0, done.stderr[-3000:]
    wait_until(lambda: run.recorded_status().get("status") == "running" and run.recorded_status()["job"] != first_job,
               timeout=240, interval=0.1)  # the resumed group trains its first epoch, the run's second
    assert "its workers stop at the end of the epoch under way" in jobs.stop(run)
    stopped = wait_for(run, ("stopped", "failed", "finished"), timeout=120)
    assert stopped["status"] == "stopped" and list(run.history()["epoch"]) == [1, 2], stopped
    done = advcore("train", "--cluster", head, "--runs-dir", str(runs), "--resume", run.id)
    assert done.returncode == 0, done.stderr[-3000:]
    status = wait_for(run, ("finished", "failed"))
    assert status["status"] == "finished", run.log_tail()
    assert "2 replicas on 2 workers" in status["device"]
    resumed, expected = run.history(), reference.history()
    assert list(resumed["epoch"]) == [1, 2, 3]
    for column in ("loss", "accuracy", "val_loss", "val_accuracy", "val_robust_accuracy"):
        np.testing.assert_allclose(resumed[column], expected[column], rtol=1e-4, atol=1e-5, err_msg=column)
    assert sorted(path.name for path in runs.iterdir() if not path.name.startswith("_")) == [run.id]
