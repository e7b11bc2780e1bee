"""Hostile run folders and image folders as the server meets them: counts handled, memory, time.

    python benchmarks/hostile_runs.py

One process imports what the server imports and warms up on a good run. Then each case damages a fresh
copy of a good run (or writes an image folder) and takes it through what the Train page and the
scheduler do with it: list the runs, read each one's snapshot and table row, its progress, wall time
and log tail, count the scheduler's queue, and press Stop on it while an unrelated process of this user
runs (its pid written into the run where the case says so). A case is handled when nothing but the
store's own RunError is raised, the unrelated process is alive afterwards, nothing outside the runs
folder was read into the page's text, and it took under 10 s. Reported: per case the growth of the
process's resident memory above idle (sampled every 2 ms), the seconds and the outcome; then the count
handled and the largest growth (target < 300 MB).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET_MB = 300
SECRET = "TOP-SECRET-LINE"


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _set_status(run, **fields) -> None:
    run.status_path.write_text(json.dumps(run.recorded_status() | {"host": socket.gethostname()} | fields))


def _link(run, name: str, target: Path) -> None:
    path = run.path / name
    if path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def _claimed_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def run_cases(bystander: int, secret: Path) -> dict:
    """name: damage(run); each gets a fresh finished run of three epochs."""
    big = 2**40
    return {
        "stop: another host's pid": lambda r: _set_status(r, status="running", pid=bystander, pid_start=999,
                                                          host="elsewhere"),
        "stop: a bystander, right start time": lambda r: _set_status(
            r, status="running", pid=bystander, pid_start=_ticks(bystander)),
        "stop: a bystander, no start time": lambda r: _set_status(r, status="running", pid=bystander),
        "stop: a queued run naming a bystander": lambda r: _set_status(r, status="queued", pid=bystander,
                                                                       pid_start=_ticks(bystander)),
        "stop: the server itself": lambda r: _set_status(r, status="running", pid=os.getpid(),
                                                         pid_start=_ticks(os.getpid())),
        "pid -1": lambda r: _set_status(r, status="running", pid=-1),
        "pid 0": lambda r: _set_status(r, status="running", pid=0),
        "pid 1, no start time": lambda r: _set_status(r, status="running", pid=1),
        "pid 2**31": lambda r: _set_status(r, status="running", pid=2**31),
        "pid 2**40": lambda r: _set_status(r, status="running", pid=big),
        "pid true": lambda r: _set_status(r, status="running", pid=True),
        "running, no pid": lambda r: _set_status(r, status="running"),
        "started without a time zone": lambda r: _set_status(r, started="2026-01-01T00:00:00"),
        "total_epochs 10**400": lambda r: r.status_path.write_text(
            r.status_path.read_text()[:-2] + ', "total_epochs": 1' + "0" * 400 + "}\n"),
        "best accuracy NaN": lambda r: r.status_path.write_text(
            r.status_path.read_text()[:-2] + ', "best_val_robust_accuracy": NaN}\n'),
        "error of 1 MB": lambda r: _set_status(r, status="failed", error="x" * 2**20),
        "status.json of 3 GB (sparse)": lambda r: os.truncate(r.status_path, 3 * 2**30),
        "status.json a FIFO": lambda r: (r.status_path.unlink(), os.mkfifo(r.status_path)),
        "status.json nested 100,000 deep": lambda r: r.status_path.write_text(
            '{"status": "finished", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        "progress batch text": lambda r: (_live(r, bystander), r.progress_path.write_text(
            '{"epoch": 4, "batch": "x", "steps_per_epoch": 10}')),
        "progress batch null": lambda r: (_live(r, bystander), r.progress_path.write_text(
            '{"epoch": 4, "batch": null, "steps_per_epoch": 10}')),
        "progress batch 1e400": lambda r: (_live(r, bystander), r.progress_path.write_text(
            '{"epoch": 4, "batch": 1e400, "steps_per_epoch": 10}')),
        "history of 200,000 epochs": lambda r: r.history_path.write_text(
            "epoch,loss\n" + "".join(f"{i},0.5\n" for i in range(1, 200_001))),
        "history of 500 MB (sparse)": lambda r: os.truncate(r.history_path, 500 * 2**20),
        "history with infinities": lambda r: r.history_path.write_text("epoch,loss,seconds\n1,inf,inf\n"),
        "history without seconds": lambda r: r.history_path.write_text("epoch\n1\n2\n"),
        "train.log -> secret": lambda r: (_set_status(r, status="failed", error="x"), _link(r, "train.log", secret)),
        "process.log -> secret": lambda r: (_set_status(r, status="failed"), _link(r, "process.log", secret)),
        "train.log of 2 GB (sparse)": lambda r: (_set_status(r, status="failed"), r.log_path.write_bytes(b""),
                                                 os.truncate(r.log_path, 2 * 2**30)),
        "status.json -> secret": lambda r: _link(r, "status.json", secret),
        "config.json -> secret": lambda r: _link(r, "config.json", secret),
        "history.csv -> secret": lambda r: _link(r, "history.csv", secret),
        "name.txt -> secret": lambda r: _link(r, "name.txt", secret),
        "model.keras -> secret": lambda r: _link(r, "model.keras", secret),
        "checkpoints -> elsewhere": lambda r: _link(r, "checkpoints", secret.parent),
        "owner.lock -> secret": lambda r: (_set_status(r, status="running", pid=bystander),
                                           _link(r, "owner.lock", secret)),
        "markdown image in the error": lambda r: _set_status(r, status="failed",
                                                             error="![x](http://example.com/pixel.png)"),
    }


def _ticks(pid: int) -> int | None:
    from advcore.storage.runs import process_start_ticks

    return process_start_ticks(pid)


def _live(run, pid: int) -> None:
    _set_status(run, status="running", pid=pid, pid_start=_ticks(pid))


def _through_the_server(root: Path) -> str:
    """What the Train page and the scheduler do with every run of `root`; the page's text, joined."""
    from advcore.jobs import scheduler
    from advcore.storage.runs import RunError, list_runs
    from app import jobs
    from app.train import run_views

    text = []
    for run in list_runs(root):
        shot = run_views.snapshot(run)
        row = run_views.run_row(shot)
        text += [str(value) for value in row.values()]
        if not shot.problem:
            where = run_views.progress(shot)
            text += [run_views.duration(where["elapsed"]), run_views.duration(where["eta"])]
        text.append(run_views.readable_log(run.log_tail()))
        try:
            text.append(jobs.stop(run))
        except RunError as error:
            text.append(str(error))
    scheduler._queue(root)
    return "\n".join(text)


def _folder_case(folder: Path) -> str:
    from app.train import folder_preview

    pictures, captions = folder_preview.samples(str(folder), 0, "crop")
    return f"{pictures.shape} {captions}"


def main() -> None:
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT / "tests"))
    from test_pages import make_run

    from advcore.storage.runs import RunError

    work = Path(tempfile.mkdtemp(prefix="hostile-runs-"))
    secret = work / "secret.txt"
    secret.write_text(f"{SECRET}\n")
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    good = make_run(work / "good", "good", ["vanilla", "vanilla", "adversarial"])
    _through_the_server(good.root)  # warm-up: every import and code path of a good run, and of a good folder
    for label in ("a", "b"):
        (work / "folder" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((28, 28), 50 * i, np.uint8)).save(work / "folder" / label / f"{i}.png")
    _folder_case(work / "folder")
    cases = run_cases(bystander.pid, secret)
    folders = {
        "folder: a 9000 x 9000 header first": (9000, 9000),
        "folder: a 60000 x 60000 header first": (60000, 60000),
    }
    print(f"{'case':<42} {'growth MB':>10} {'seconds':>8}  outcome")
    handled, worst = 0, 0.0
    for name in [*cases, *folders]:
        root = work / f"case-{handled}-{len(name)}-{time.monotonic_ns()}"
        if name in cases:
            run_root = root / "runs"
            shutil.copytree(good.path, run_root / good.id)
            run = type(good)(run_root, good.id)
            cases[name](run)
            action = lambda: _through_the_server(run_root)  # noqa: E731
        else:
            for label in ("a", "b"):
                (root / label).mkdir(parents=True)
                (root / label / "0000.png").write_bytes(_claimed_png(*folders[name]))
                for i in range(1, 4):
                    Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(root / label / f"{i:04d}.png")
            action = lambda: _folder_case(root)  # noqa: E731
        idle, peak, sampling = rss_mb(), [0.0], [True]

        def sample():
            while sampling[0]:
                peak[0] = max(peak[0], rss_mb())
                time.sleep(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        began = time.perf_counter()
        try:
            text = action()
            outcome = "handled"
        except RunError as error:
            text, outcome = str(error), "handled (RunError)"
        except Exception as error:  # what the benchmark is here to find
            text, outcome = "", f"NOT handled: {type(error).__name__}: {str(error)[:80]}"
        seconds = time.perf_counter() - began
        sampling[0] = False
        sampler.join()
        growth = max(peak[0], rss_mb()) - idle
        if SECRET in text:
            outcome = "NOT handled: a file outside the runs folder was shown"
        if bystander.poll() is not None:
            outcome = "NOT handled: the unrelated process was signalled"
            bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        if seconds > 10:
            outcome = f"NOT handled: took {seconds:.0f} s"
        handled += outcome.startswith("handled")
        worst = max(worst, growth)
        print(f"{name:<42} {growth:>10.1f} {seconds:>8.2f}  {outcome}")
    bystander.kill()
    shutil.rmtree(work, ignore_errors=True)
    total = len(cases) + len(folders)
    print(f"handled {handled} of {total} cases; largest growth above idle: {worst:.1f} MB (target < {TARGET_MB} MB): "
          + ("met" if worst < TARGET_MB and handled == total else "NOT met"))


if __name__ == "__main__":
    main()
