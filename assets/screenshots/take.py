"""Screenshots of every page at 1400x900, as a new user sees them, into assets/screenshots/.

    python assets/screenshots/take.py

Trains a small demo run (about a minute) in a scratch runs folder, serves the app on a free localhost
port with it, and drives Debian's Chromium with Playwright through every page: the Train page's form
and its runs view, History, the Playground with a sample attacked, Evaluate, Interpret, Compare and
the augmentation study.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VIEWPORT = {"width": 1400, "height": 900}
DEMO = ["--name", "demo", "--train-size", "3000", "--validation-size", "500", "--robust-val-size", "200",
        "--epochs", "4", "--attack", "fgsm_rs", "--lr-schedule", "cyclic", "--lr", "0.005"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(runs: Path, port: int) -> subprocess.Popen:
    env = os.environ | {"ADVLAB_RUNS_DIR": str(runs), "ADVLAB_UPLOADS_DIR": str(runs.parent / "uploads"),
                        "ADVLAB_MAX_RUNS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    server = subprocess.Popen([sys.executable, "-m", "app.server", "--server.headless",
                               "true", "--server.port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2).read() == b"ok":
                return server
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the app did not start")


def settle(page) -> None:
    """The page's script run over, no faded element of an earlier one left, and its charts drawn."""
    page.wait_for_timeout(1500)
    page.wait_for_function("""() => {
        const app = document.querySelector('[data-testid="stApp"]');
        return app && !['running', 'rerunRequested'].includes(app.getAttribute('data-test-script-state'))
            && !document.querySelector('[data-stale="true"]');
    }""", timeout=180_000)
    page.wait_for_timeout(1000)


def take(page, name: str) -> None:
    settle(page)
    path = HERE / f"{name}.png"
    page.screenshot(path=str(path))
    print(path.relative_to(ROOT))


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="advlab-screenshots-"))
    runs = scratch / "runs"
    subprocess.run([sys.executable, "-m", "advcore", "train", "--runs-dir", str(runs), *DEMO], cwd=ROOT, check=True,
                   env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=subprocess.DEVNULL)
    port = free_port()
    server = serve(runs, port)
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(120_000)
            page.goto(f"http://localhost:{port}")
            page.get_by_text("AdvLab", exact=True).first.wait_for()  # the first script run has drawn the page
            take(page, "home")
            link = lambda name: page.get_by_role("link", name=name, exact=True).first.click()  # noqa: E731
            link("Train")
            take(page, "train-new-run")
            page.get_by_role("radio", name="Runs", exact=True).click()
            settle(page)
            table = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
            page.mouse.click(table["x"] + 17, table["y"] + 35 + 17)  # tick the demo run's row
            take(page, "train-runs")
            link("History")
            take(page, "history")
            link("Playground")
            page.get_by_text("Sample gallery", exact=True).click()
            page.get_by_text("Linf distance").wait_for()
            settle(page)
            page.get_by_text("what the model sees").first.scroll_into_view_if_needed()  # the image and its attack
            take(page, "playground")
            for name, file in (("Evaluate", "evaluate"), ("Interpret", "interpret"), ("Compare", "compare"),
                               ("Augmentation study", "study")):
                link(name)
                take(page, file)
            browser.close()
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
