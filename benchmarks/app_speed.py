"""Dashboard speed: page render times with many runs (AppTest, after one warm-up run) and the
server's CPU while a browser watches a training run (real `streamlit run` + Chromium).

    python benchmarks/app_speed.py [--watch-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from advcore.storage.runs import Run  # noqa: E402

PHASES = (["vanilla"] * 10 + ["adversarial"] * 3)


def fake_run(root: Path, name: str, epochs: int) -> Run:
    """A finished run with a realistic history (no training: this measures the pages)."""
    run = Run.create({"name": name, "mode": "adversarial", "data": {"dataset": "fashion_mnist"},
                      "model": {"architecture": "small_cnn"},
                      "attack": {"method": "fgsm", "norm": "linf", "eps": 0.01},
                      "schedule": {"kind": "interleaved", "vanilla_epochs": 10, "adversarial_epochs": 3}}, root, name)
    rng = np.random.default_rng(len(name))
    e = np.arange(1, epochs + 1)
    phases = [PHASES[i % len(PHASES)] for i in range(epochs)]
    spikes = np.array([0.8 if p == "adversarial" else 0.0 for p in phases])
    run.write_history(pd.DataFrame({
        "epoch": e, "phase": phases, "loss": 1 / np.sqrt(e) + spikes + rng.normal(0, 0.02, epochs),
        "accuracy": 0.9 - 0.5 / np.sqrt(e), "val_loss": 1.1 / np.sqrt(e) + spikes / 2,
        "val_accuracy": 0.9 - 0.4 / np.sqrt(e), "val_robust_accuracy": 0.3 + 0.2 * (1 - 1 / np.sqrt(e)),
        "learning_rate": 1e-3, "eps": [0.01 if p == "adversarial" else 0 for p in phases], "seconds": 5.0,
        "warning": ""}))
    run.update_status(status="finished", started="2026-11-21T10:00:00+00:00", ended="2026-11-21T11:00:00+00:00")
    return run


def render_seconds(page: str, query: dict | None = None, pick: str | None = None) -> float:
    """Best of three renders of a page after a warm-up (imports, caches)."""
    times = []
    for attempt in range(4):
        app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
        for key, value in (query or {}).items():
            app.query_params[key] = value
        app.run()
        app.switch_page(f"pages/{page}_page.py")
        start = time.perf_counter()
        app.run()
        if pick:  # the runs whose names start with `pick`, overlaid
            app.multiselect[0].set_value([o for o in app.multiselect[0].options if o.startswith(pick)]).run()
        if attempt:
            times.append(time.perf_counter() - start)
        assert not app.exception, app.exception
    return min(times)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch_cost(root: Path, seconds: float) -> float | None:
    """Server CPU (share of one core) while Chromium shows a training run's live page."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    from advcore.training.config import TrainConfig
    from app import jobs

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = os.environ | {"ADVLAB_RUNS_DIR": str(root), "ADVLAB_MAX_RUNS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "app.server", "--server.port",
                               str(port), "--server.headless", "true"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["ADVLAB_RUNS_DIR"] = str(root)
    run = jobs.submit(TrainConfig.from_dict({"name": "watched", "data": {"train_size": 6000},
                                             "schedule": {"epochs": None}, "attack": {"method": "fgsm"}}), root)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
            page = browser.new_page()
            page.goto(f"http://localhost:{port}/")
            page.get_by_text("AdvLab", exact=True).first.wait_for()
            page.goto(f"http://localhost:{port}/train?run={run.id}")
            page.get_by_text("running", exact=True).wait_for(timeout=120_000)
            before, started = cpu_seconds(server.pid), time.monotonic()
            time.sleep(seconds)
            share = (cpu_seconds(server.pid) - before) / (time.monotonic() - started)
            browser.close()
    finally:
        jobs.stop(run)
        server.terminate()
        server.wait(timeout=30)
    return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watch-seconds", type=float, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "runs"
        os.environ["ADVLAB_RUNS_DIR"] = str(root)
        os.environ["ADVLAB_MAX_RUNS"] = "0"
        runs = [fake_run(root, f"run-{i:02d}", epochs=200 if i < 10 else 50) for i in range(20)]
        train = render_seconds("train", {"run": runs[0].id})
        history = render_seconds("history", pick="run-0")
        print(f"{'Train page, 20 runs in the store, one selected':<52} {train:6.2f} s  (target < 2)")
        print(f"{'History page, 10 runs x 200 epochs overlaid':<52} {history:6.2f} s  (target < 2)")
        shutil.rmtree(root)
        os.environ["ADVLAB_MAX_RUNS"] = "1"
        share = watch_cost(root, args.watch_seconds)
        if share is None:
            print("polling cost: chromium not installed")
        else:
            print(f"{'server CPU while a browser watches a running job':<52} {share:6.1%} of one core  (target < 5%)")


if __name__ == "__main__":
    main()
