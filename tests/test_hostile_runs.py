"""Run folders as a careless or hostile user (or a shared filesystem) leaves them: no process is signalled
unless it is provably the run's own, no number crashes a reader or holds a training slot, no symbolic
link is followed out of the runs folder, and every page still works. Real processes, real files."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import kill_scheduler, kill_worker, shown, wait_for, worker_pid
from streamlit.testing.v1 import AppTest
from test_pages import ROOT, make_run

from advcore.storage.runs import Run, RunError, list_runs, process_start_ticks
from advcore.jobs import scheduler
from app import jobs

HERE = socket.gethostname()


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "0")
    return tmp_path / "runs"


@pytest.fixture
def bystander():
    """An unrelated process of this user (not AdvLab's): nothing may signal it."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


def with_status(root, name: str, **fields) -> Run:
    run = make_run(root, name, ["vanilla", "vanilla"])
    run.status_path.write_text(json.dumps({"status": "running", "host": HERE, "created": "2026-11-21T10:00:00+00:00"}
                                          | fields))
    return run


def train_page(run: Run) -> AppTest:
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    app.query_params["run"] = run.id
    app.run()
    app.switch_page("pages/train_page.py").run()
    assert not app.exception, app.exception[0].value
    return app


# ----------------------------------------------------------------------------- Stop signals only the run's own


def test_stop_never_signals_another_hosts_pid_and_says_so(runs_root, bystander):
    run = with_status(runs_root, "foreign", pid=bystander.pid, pid_start=999, host="elsewhere")
    message = jobs.stop(run)  # the request waits in the run's folder for the process on that host
    assert message.endswith("its process on elsewhere stops after its current batch (no process of this machine "
                            "was signalled)")
    assert bystander.poll() is None and run.stop_request_path.exists()


@pytest.mark.parametrize("fields", [
    {"pid": "bystander", "pid_start": "bystander"},  # this host, the right start time, but not AdvLab's
    {"pid": "bystander"},  # no start time and no lock
    {"pid": "bystander", "pid_start": "bystander", "status": "queued"},  # a launched queued run
    {"pid": "self", "pid_start": "self"},  # the server itself
], ids=["not advcore", "no proof", "queued", "the server"])
def test_a_process_that_is_not_provably_the_runs_own_is_never_signalled(runs_root, bystander, fields):
    pid = {"bystander": bystander.pid, "self": os.getpid()}[fields["pid"]]
    fields = fields | {"pid": pid} | ({"pid_start": process_start_ticks(pid)} if "pid_start" in fields else {})
    run = with_status(runs_root, "impostor", **fields)
    assert run.owner() is None and run.status()["status"] == "failed"
    with pytest.raises(RunError, match="is failed, not running"):
        jobs.stop(run)
    assert bystander.poll() is None


@pytest.mark.parametrize("pid", [-1, 0, 1, 2**31, 2**40, True])
def test_a_pid_out_of_range_is_damage_and_never_a_signal(runs_root, pid):
    run = with_status(runs_root, "wild", pid=pid, pid_start=1)
    with pytest.raises(RunError, match="field 'pid' is"):
        jobs.stop(run)
    assert [r.id for r in list_runs(runs_root)] == [run.id]
    train_page(run)
    jobs.delete(run)
    assert not run.path.exists()


def test_the_runs_own_process_is_signalled(runs_root, advcore_process):
    run = with_status(runs_root, "ours", pid=advcore_process.pid, pid_start=process_start_ticks(advcore_process.pid))
    assert run.owner() == advcore_process.pid and run.status()["status"] == "running"
    assert jobs.stop(run).endswith("stopping after its current batch")
    assert advcore_process.wait(30) == -signal.SIGTERM


# ----------------------------------------------------------------------------- numbers that crashed or stalled


def test_the_scheduler_launches_a_queued_run_beside_every_damaged_or_impostor_run(tmp_path, bystander):
    """A real scheduler process with one slot: runs that name a huge pid, init, no pid or someone else's
    process hold none of it, and another host's run holds that host's slot."""
    runs = tmp_path / "runs"
    with_status(runs, "huge-pid", pid=2**31)
    with_status(runs, "huge-pid-2", pid=2**40, pid_start=5)
    with_status(runs, "init", pid=1)
    with_status(runs, "no-pid")
    with_status(runs, "bystander", pid=bystander.pid, pid_start=process_start_ticks(bystander.pid))
    with_status(runs, "elsewhere", pid=bystander.pid, host="another-host")
    queued = Run.create({"name": "waiting", "schedule": {"epochs": 1}, "data": {"train_size": 256,
                                                                              "validation_size": 64}}, runs)
    env = os.environ | {"PYTHONPATH": str(ROOT), "ADVLAB_MAX_RUNS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "advcore", "scheduler", "--runs-dir", str(runs),
                                "--idle-exit", "5"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        status = wait_for(lambda: "pid" in queued.recorded_status() and queued.recorded_status(), 60)
        assert process.poll() is None, process.stdout.read()
        os.kill(status["pid"], signal.SIGKILL)
    finally:
        kill_scheduler(runs)
        process.wait(30)
    assert "Traceback" not in process.stdout.read()
    assert bystander.poll() is None


@pytest.mark.parametrize("fields, words", [
    ({"started": "2026-01-01T00:00:00"}, "field 'started' is '2026-01-01T00:00:00', not a time with its time zone"),
    ({"total_epochs": 10**400}, "field 'total_epochs' is 100000000000... (huge), outside 1 to 1,000,000,000"),
    ({"epoch": -3}, "field 'epoch' is -3, outside 0 to"),
    ({"best_val_robust_accuracy": float("nan")}, "field 'best_val_robust_accuracy' is nan, outside 0 to 1"),
    ({"error": "x" * 100_000}, "field 'error' holds 100,000 characters"),
], ids=["naive time", "10**400 epochs", "negative epoch", "NaN accuracy", "a 100 KB error"])
def test_fields_out_of_bounds_make_a_damaged_run_that_every_page_lists(runs_root, fields, words):
    run = make_run(runs_root, "bounds", ["vanilla"])
    run.status_path.write_text(json.dumps(run.recorded_status() | fields))
    with pytest.raises(RunError, match="status.json") as raised:
        run.status()
    assert words in str(raised.value)
    app = train_page(run)
    assert app.dataframe[0].value.set_index("id").loc[run.id, "status"] == "damaged"


@pytest.mark.parametrize("progress", [
    {"epoch": 3, "batch": "x", "steps_per_epoch": 10},
    {"epoch": 3, "batch": None, "steps_per_epoch": 10},
    {"epoch": 3, "batch": 5, "steps_per_epoch": 0},
    {"epoch": 3, "batch": 1e400, "steps_per_epoch": 10},
    {"epoch": 3, "batch": 2**70, "steps_per_epoch": 10},
    {"done": 7, "total": 3, "cell": "x"},
    [1, 2],
    {"done": 1, "total": 3, "shards": [{"label": "images 0-9", "fraction": 2.0}]},
    {"done": 1, "total": 3, "shards": [{"label": ["nested"], "fraction": 0.5}]},
    {"done": 1, "total": 3, "shards": [{"shards": []}]},
    {"done": 1, "total": 3, "shards": [{}] * 257},
], ids=["batch text", "batch null", "no steps", "batch infinite", "batch huge", "done over total", "a list",
        "shard fraction over 1", "shard label a list", "shards in a shard", "too many shards"])
def test_a_live_runs_damaged_progress_is_unknown_progress(runs_root, advcore_process, progress):
    run = with_status(runs_root, "live", pid=advcore_process.pid, pid_start=process_start_ticks(advcore_process.pid),
                      started="2026-11-21T10:00:00+00:00")
    run.progress_path.write_text(json.dumps(progress))
    assert run.progress() == {}
    app = train_page(run)
    assert any("badge[running]" in block.value for block in app.markdown)
    assert [bar.proto.text for bar in app.get("progress")] == ["epoch 3: 0%"]  # two epochs done, the third unknown


# ----------------------------------------------------------------------------- symbolic links and special files


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-LINE\n" * 3)
    return path


@pytest.mark.parametrize("name", ["train.log", "process.log"])
def test_a_log_that_links_outside_is_never_shown(runs_root, secret, name):
    run = with_status(runs_root, "linked-log", status="failed", error="boom")
    (run.path / name).symlink_to(secret)
    assert "TOP-SECRET" not in run.log_tail() and "symbolic link" in run.log_tail()
    app = train_page(run)
    assert not any("TOP-SECRET" in block.value for block in app.code)


@pytest.mark.parametrize("target", ["/", "/etc", "a run"])
def test_a_run_folder_that_is_a_link_is_never_listed_opened_or_deleted(runs_root, target):
    real = make_run(runs_root, "real", ["vanilla"])
    link = runs_root / "20990101-000000-link-0000"
    link.symlink_to(real.path if target == "a run" else target)
    assert [run.id for run in list_runs(runs_root)] == [real.id]
    with pytest.raises(RunError, match="symbolic link is never a run"):
        Run.open(link.name, runs_root)
    with pytest.raises(RunError, match="is a symbolic link, not a run"):
        jobs.delete(Run(runs_root, link.name))
    assert link.is_symlink() and real.path.is_dir() and Path(target if target != "a run" else real.path).exists()
    train_page(Run(runs_root, link.name))


@pytest.mark.parametrize("file", ["status.json", "config.json", "history.csv"])
def test_a_run_file_that_links_outside_is_damage_not_content(runs_root, secret, file):
    run = make_run(runs_root, "linked", ["vanilla"])
    (run.path / file).unlink()
    (run.path / file).symlink_to(secret)
    reader = {"status.json": run.status, "config.json": run.training_config, "history.csv": run.history}[file]
    with pytest.raises(RunError, match=f"{file} is damaged \\({file} is a symbolic link, which AdvLab never follows"):
        reader()
    app = train_page(run)
    assert not any("TOP-SECRET" in error.value for error in app.error)


def test_a_fifo_status_is_damage_and_no_reader_blocks(runs_root):
    run = make_run(runs_root, "fifo", ["vanilla"])
    run.status_path.unlink()
    os.mkfifo(run.status_path)
    with pytest.raises(RunError, match="status.json is damaged \\(status.json is not a regular file\\)"):
        run.status()
    train_page(run)


def test_a_huge_status_file_is_refused_before_it_is_read(runs_root):
    run = make_run(runs_root, "huge", ["vanilla"])
    with open(run.status_path, "wb") as handle:
        handle.truncate(3 * 2**30)  # 3 GB, sparse: refused from its size alone
    with pytest.raises(RunError, match="holds 3,221,225,472 bytes, over the 2,097,152 expected at most"):
        run.status()


def test_deeply_nested_json_is_damage(runs_root):
    run = make_run(runs_root, "nested", ["vanilla"])
    run.status_path.write_text('{"status": "finished", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(RunError, match="status.json is damaged"):
        run.status()


def test_links_inside_a_run_to_models_checkpoints_samples_and_names_are_not_followed(runs_root, secret, tmp_path):
    from app import registry

    run = make_run(runs_root, "inner-links", ["vanilla"])
    outside = tmp_path / "outside"
    (outside / "checkpoints").mkdir(parents=True)
    (outside / "checkpoints" / "epoch-0001.keras").write_bytes(b"x")
    (outside / "checkpoints" / "epoch-0001.optimizer.npz").write_bytes(b"x")
    run.model_path.symlink_to(secret)
    run.checkpoint_dir.symlink_to(outside / "checkpoints")
    run.samples_path().parent.symlink_to(outside)
    (outside / "latest.png").write_bytes(b"\x89PNG")
    run.name_path.symlink_to(secret)
    assert run.model_file() is None and run.checkpoints() == [] and run.latest_samples() is None
    assert "TOP-SECRET" not in run.name()
    assert not any(entry.path == run.model_path for entry in registry._runs(runs_root))


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_a_linked_or_fifo_lock_file_is_never_opened_for_writing(runs_root, tmp_path, advcore_process, kind):
    target = tmp_path / "not-a-lock"
    target.write_text("precious\n")
    run = with_status(runs_root, "lock-link", pid=advcore_process.pid)  # no start time: the lock would decide
    if kind == "link":
        run.lock_path.symlink_to(target)
    else:
        os.mkfifo(run.lock_path)
    assert run.owner() is None and run.status()["status"] == "failed"
    assert target.read_text() == "precious\n"
    train_page(run)


@pytest.mark.parametrize("record", ["wild", "bystander"])
def test_an_evaluation_workers_record_naming_no_worker_starts_a_new_one(runs_root, bystander, record):
    from advcore.evaluation import worker

    worker.worker_file(runs_root).parent.mkdir(parents=True)
    named = {"wild": {"pid": 2**40, "pid_start": "x"},  # an alive process that is not AdvLab's holds no worker slot
             "bystander": {"pid": bystander.pid, "pid_start": process_start_ticks(bystander.pid)}}[record]
    worker.worker_file(runs_root).write_text(json.dumps(named))
    Run.create({"kind": "plan"}, worker.evaluations_root(runs_root), "queued-eval")
    try:
        jobs.ensure_worker(runs_root)
        assert 1 < worker_pid(runs_root) < 2**22 and worker_pid(runs_root) != named["pid"]  # a worker of its own
    finally:
        kill_worker(runs_root)


@pytest.mark.parametrize("history", [
    "epoch\n1\n2\n",
    "epoch,loss,seconds\n1,inf,inf\n2,-inf,1e308\n",
    "epoch,phase,loss,val_accuracy,seconds\n1,adversarial,0.5,1e300,nan\n",
    "epoch,loss\n" + "".join(f"{i},0.5\n" for i in range(1, 200_001)),
], ids=["epochs only", "infinities", "absurd values", "200,000 epochs"])
def test_a_history_of_odd_but_numeric_columns_is_drawn_without_a_crash(runs_root, advcore_process, history):
    run = with_status(runs_root, "odd-history", pid=advcore_process.pid,
                      pid_start=process_start_ticks(advcore_process.pid), started="2026-11-21T10:00:00+00:00")
    run.history_path.write_text(history)
    train_page(run)


def test_markdown_in_a_shared_runs_files_is_shown_as_text(runs_root):
    """A name, device or error written by someone else into a shared runs folder never becomes a link or
    an image fetched from another host."""
    image = "![x](http://example.com/pixel.png)"
    run = with_status(runs_root, "markdown", status="failed", error=f"boom {image}", device=f"cpu {image}")
    run.rename(f"name {image}")
    damaged = with_status(runs_root, "markdown-damaged", pid=image)
    for selected in (run, damaged):
        app = train_page(selected)
        texts = [e.value for e in app.error] + [m.value for m in app.markdown] + [h.value for h in app.subheader]
        assert any(image in shown(text) for text in texts)  # shown as the characters it is
        assert not any(image in text or "http://" in text for text in texts)  # never as markdown to render


# ----------------------------------------------------------------------------- nothing written through a link


def _queued(root, name: str) -> Run:
    return Run.create({"name": name, "schedule": {"epochs": 1}, "data": {"train_size": 256, "validation_size": 64}},
                      root, name)


def test_the_scheduler_never_appends_a_process_log_through_a_link(runs_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "1")
    precious = tmp_path / "bashrc"
    precious.write_text("export PRECIOUS=1\n")
    trap = _queued(runs_root, "a-trap")  # ids sort by time, then name: the trap is first in the queue
    trap.process_log_path.symlink_to(precious)
    honest = _queued(runs_root, "b-honest")
    lines = []
    started, _ = scheduler.start_queued(runs_root, echo=lines.append)
    assert started == [] and trap.status()["status"] == "failed"
    assert "process.log is a symbolic link, which AdvLab never follows" in trap.status()["error"]
    (process,), _ = scheduler.start_queued(runs_root, echo=lines.append)  # the queue goes on
    try:
        assert honest.recorded_status()["pid"] == process.pid
    finally:
        process.kill()
        process.wait()
    assert precious.read_text() == "export PRECIOUS=1\n"


@pytest.mark.parametrize("file", ["train.log", "owner.lock"])
def test_training_refuses_a_run_whose_log_or_lock_is_a_link_and_writes_nothing_through_it(runs_root, tmp_path, file):
    from test_run_safety import advcore as advcore_cli

    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    run = _queued(runs_root, "linked")
    (run.path / file).symlink_to(precious)
    result = advcore_cli("train", "--resume", run.id, "--runs-dir", str(runs_root))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{file} is a symbolic link, which AdvLab never follows" in result.stderr
    assert precious.read_text() == "keep me\n"
