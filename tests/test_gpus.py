"""GPU slots on a faked GPU box ($ADVLAB_GPUS): what each child process gets (its CUDA_VISIBLE_DEVICES and
memory growth, read from the real child's /proc environment), the order runs start in, refusals that
name the inventory, and the server's own device setting."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import kill_worker, wait_for

from advcore import devices
from advcore.jobs import gpus, scheduler
from advcore.storage.runs import Run

ROOT = Path(__file__).resolve().parents[1]


def child_environment(pid: int) -> dict:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


@pytest.fixture
def box(monkeypatch, tmp_path):
    """A faked two-GPU machine and a runs root where up to four runs may train at once."""
    monkeypatch.setenv(devices.GPUS_ENV, "0,1")
    monkeypatch.setenv(scheduler.MAX_RUNS_ENV, "4")
    monkeypatch.delenv(devices.MEMORY_ENV, raising=False)
    root = tmp_path / "runs"
    monkeypatch.setenv("ADVLAB_RUNS_DIR", str(root))
    yield root
    for run_dir in root.glob("2*"):
        pid = json.loads((run_dir / "status.json").read_text()).get("pid")
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    kill_worker(root)


@pytest.mark.parametrize("text, expected", [("0,1,3", (0, 1, 3)), (" 2 ", (2,)), ("none", ()), ("", ())])
def test_an_inventory_is_read_from_the_override(monkeypatch, text, expected):
    monkeypatch.setenv(devices.GPUS_ENV, text)
    assert devices.inventory() == expected


@pytest.mark.parametrize("text, message", [("0,a", "give GPU indices"), ("1,1", "named twice"), ("64", "0..63")])
def test_a_bad_inventory_override_is_explained(monkeypatch, text, message):
    monkeypatch.setenv(devices.GPUS_ENV, text)
    with pytest.raises(devices.DeviceError, match=message):
        devices.inventory()


def test_a_child_sees_its_gpus_with_memory_growth_or_a_cap(monkeypatch):
    monkeypatch.delenv(devices.MEMORY_ENV, raising=False)
    assert devices.child_env([0, 2]) == {"CUDA_VISIBLE_DEVICES": "0,2", "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                                         "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    assert devices.child_env([])["CUDA_VISIBLE_DEVICES"] == ""  # the CPU only
    monkeypatch.setenv(devices.MEMORY_ENV, "4096")
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in devices.child_env([1]) and devices.memory_limit_mb() == 4096
    monkeypatch.setenv(devices.MEMORY_ENV, "lots")
    with pytest.raises(devices.DeviceError, match="ADVLAB_GPU_MEMORY_MB"):
        devices.memory_limit_mb()


def simulate(asks: dict[str, int], inventory: list[int], finish_order: list[str]) -> list[tuple[str, tuple]]:
    """Runs the policy as the scheduler does, finishing runs in `finish_order`: (run, GPUs) in start order."""
    waiting, running, started = dict(asks), {}, []
    for finished in [None, *finish_order]:
        running.pop(finished, None)
        busy = {gpu for held in running.values() for gpu in held}
        for run, given in gpus.assign(list(waiting.items()), [g for g in inventory if g not in busy], slots=4):
            assert not busy & set(given)  # never two runs on one GPU
            busy |= set(given)
            running[run] = given
            started.append((run, given))
            del waiting[run]
    return started


def test_runs_start_oldest_first_and_a_two_gpu_run_is_not_passed_over():
    started = simulate({"a": 1, "b": 1, "c": 2, "d": 1}, [0, 1], ["a", "b", "c", "d"])
    assert started == [("a", (0,)), ("b", (1,)), ("c", (0, 1)), ("d", (0,))]  # d waited for c, though 0 was free


def test_a_four_gpu_run_waits_only_for_the_runs_before_it():
    asks = {"small-0": 1, "big": 4, **{f"small-{i}": 1 for i in range(1, 6)}}
    started = simulate(asks, [0, 1, 2, 3], ["small-0", "big", *[f"small-{i}" for i in range(1, 6)]])
    assert [run for run, _ in started][:2] == ["small-0", "big"]


def test_cpu_runs_need_only_a_run_slot():
    assert gpus.assign([("a", 2), ("cpu", 0)], [], slots=4) == [("cpu", ())]
    assert gpus.assign([("a", 0), ("b", 0)], [0], slots=1) == [("a", ())]


def queue_run(root, name: str, asked) -> Run:
    config = {"name": name, "data": {"train_size": 640, "validation_size": 100}, "schedule": {"epochs": 1},
              "distribute": {"gpus": asked}}
    return Run.create(config, root, name)


def test_the_scheduler_gives_each_run_its_own_gpus_in_order(box):
    a, b, c, d = (queue_run(box, name, asked) for name, asked in (("a", 1), ("b", 1), ("c", 2), ("d", 1)))
    scheduler.start_queued(box, echo=lambda line: None)
    for run, visible in ((a, "0"), (b, "1")):
        status = run.recorded_status()
        assert status["gpus"] == [int(visible)]
        env = child_environment(status["pid"])
        assert env["CUDA_VISIBLE_DEVICES"] == visible and env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert "pid" not in c.recorded_status() and "pid" not in d.recorded_status()  # d waits behind c
    for run in (a, b):
        os.kill(run.recorded_status()["pid"], signal.SIGKILL)
        wait_for(lambda run=run: run.status()["status"] == "failed", timeout=30)
    scheduler.start_queued(box, echo=lambda line: None)
    assert c.recorded_status()["gpus"] == [0, 1] and "pid" not in d.recorded_status()
    assert child_environment(c.recorded_status()["pid"])["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_a_queued_run_asking_more_than_the_machine_has_fails_and_holds_nothing(box):
    greedy, modest = queue_run(box, "greedy", 3), queue_run(box, "modest", 1)
    scheduler.start_queued(box, echo=lambda line: None)
    assert greedy.status()["status"] == "failed" and "2 GPUs (0, 1; $ADVLAB_GPUS)" in greedy.status()["error"]
    assert modest.recorded_status()["gpus"] == [0]


def test_the_cli_refuses_more_gpus_than_the_machine_has_before_any_run_exists(tmp_path):
    runs = tmp_path / "runs"
    result = subprocess.run([sys.executable, "-m", "advcore", "train", "--gpus", "3", "--runs-dir", str(runs)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=os.environ | {devices.GPUS_ENV: "0", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert "asks for 3 GPUs; this machine has 1 GPU (0; $ADVLAB_GPUS)" in result.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_several_workers_are_a_clusters_and_this_machine_refuses_them(box, tmp_path):
    from advcore.jobs.cluster import LARGEST_NODE

    assert gpus.check_request({"distribute": {"workers": 2, "gpus": 1}}, [0, 1], LARGEST_NODE) == 1  # each worker's
    queued = Run.create({"distribute": {"workers": 2}}, box, "pair")
    scheduler.start_queued(box, echo=lambda line: None)
    assert queued.status()["status"] == "failed" and "2 workers train on a Ray cluster's nodes" in queued.status()["error"]
    result = subprocess.run([sys.executable, "-m", "advcore", "train", "--workers", "2", "--runs-dir",
                             str(tmp_path / "cli")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "queue the run with --cluster HOST:PORT" in result.stderr
    assert not (tmp_path / "cli").exists() or not any((tmp_path / "cli").iterdir())


@pytest.mark.parametrize("value, message", [(65, "must lie in [0, 64]"), ("two", "an integer or one of 'all'"),
                                            (True, "an integer or one of 'all'")])
def test_the_gpus_field_is_bounded(value, message):
    from advcore.training.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        TrainConfig.from_dict({"distribute": {"gpus": value}})


def test_the_evaluation_worker_takes_a_free_gpu_and_the_queue_counts_it(box):
    from advcore.evaluation import plans, worker
    from app import jobs

    plan = plans.Plan.from_dict({"models": [{"label": "m", "path": str(ROOT / "assets/models/standard/model.keras")}],
                                 "attacks": [{"name": "fgsm", "method": "fgsm", "options": {}}],
                                 "eps": {"linf": [0.1]}, "count": 10})
    job = jobs.submit_evaluation(plan, box)
    record = worker.live_record(box)
    assert record["gpus"] == [0] and child_environment(record["pid"])["CUDA_VISIBLE_DEVICES"] == "0"
    assert gpus.in_use(box) == {0}
    run = queue_run(box, "one", 1)
    scheduler.start_queued(box, echo=lambda line: None)
    assert run.recorded_status()["gpus"] == [1]  # GPU 0 is the worker's
    waiting = queue_run(box, "next", 1)
    wait_for(lambda: job.recorded_status()["status"] == "finished", timeout=120)
    wait_for(lambda: worker.live_record(box) is None, timeout=30)  # idle on a GPU a run waits for: it leaves
    scheduler.start_queued(box, echo=lambda line: None)
    assert waiting.recorded_status()["gpus"] == [0]


SERVER_PROBE = """
import tensorflow as tf
from app.device import setup_server
from advcore import attacks, models
problem = setup_server()
model = models.load("assets/models/standard/model.keras")
result = attacks.attack(model, tf.zeros([2, 28, 28, 1]).numpy(), [0, 1], attacks.fgsm(0.1), batch_size=2)
with tf.device(None):
    x = tf.constant([1.0]) * 2
print(problem, tf.config.get_visible_devices("GPU"), x.device)
"""


@pytest.mark.parametrize("setting, problem", [("cpu", "None"), ("gpu:3", "ADVLAB_SERVER_DEVICE=gpu:3: this machine "
                                                                       "has 2 GPUs (0, 1; $ADVLAB_GPUS)")])
def test_the_servers_own_work_follows_its_device_setting(setting, problem):
    result = subprocess.run([sys.executable, "-c", SERVER_PROBE], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=os.environ | {devices.GPUS_ENV: "0,1", devices.SERVER_DEVICE_ENV: setting,
                                                           "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(f"{problem} [] ") and result.stdout.strip().endswith("CPU:0")


def test_the_model_check_runs_on_the_cpu_whatever_the_machine_has(box):
    from advcore.storage import model_files

    env = model_files.sandbox_command(Path("m.keras"), 1000)["env"]
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_the_cli_bounds_gpus(tmp_path):
    result = subprocess.run([sys.executable, "-m", "advcore", "train", "--gpus", "65", "--runs-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "--gpus" in result.stderr


@pytest.mark.parametrize("asked", ["two", -1, 1.5, True])
def test_a_queued_runs_hand_edited_gpu_request_fails_it_with_the_reason(box, asked):
    """A config.json is read as untrusted: a request that is not 0..64 or "all" fails the run, the queue goes on."""
    odd, modest = queue_run(box, "odd", 1), queue_run(box, "modest", 1)
    config = json.loads(odd.config_path.read_text())
    config["distribute"]["gpus"] = asked
    odd.config_path.write_text(json.dumps(config))
    scheduler.start_queued(box, echo=lambda line: None)
    assert odd.status()["status"] == "failed" and "distribute.gpus: give 0..64" in odd.status()["error"]
    assert modest.recorded_status()["gpus"] == [0]


def test_a_mistyped_gpu_list_or_memory_cap_stops_no_scheduler(box, monkeypatch):
    run = queue_run(box, "patient", 1)
    said = []
    monkeypatch.setenv(devices.GPUS_ENV, "zero")
    assert scheduler.start_queued(box, echo=said.append) == ([], True)
    assert "ADVLAB_GPUS: give GPU indices" in said[-1] and run.recorded_status()["status"] == "queued"
    monkeypatch.setenv(devices.GPUS_ENV, "0")
    monkeypatch.setenv(devices.MEMORY_ENV, "lots")
    scheduler.start_queued(box, echo=said.append)
    assert run.status()["status"] == "failed" and "ADVLAB_GPU_MEMORY_MB" in run.status()["error"]
