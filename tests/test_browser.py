"""End to end in Chromium: `streamlit run` on a free localhost port, driven by Playwright."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import kill_scheduler, free_port, wait_for
from playwright import sync_api as playwright

from advcore.storage.runs import list_runs

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def streamlit_server(runs: Path, max_runs: int = 1):
    """`streamlit run` on a free localhost port over `runs`; yields its URL. Ends the server, the runs
    root's scheduler and every training process it leaves."""
    port = free_port()
    env = os.environ | {"ADVLAB_RUNS_DIR": str(runs), "ADVLAB_MAX_RUNS": str(max_runs), "TF_CPP_MIN_LOG_LEVEL": "2",
                        "ADVLAB_UPLOADS_DIR": str(runs.parent / "uploads")}
    process = subprocess.Popen([sys.executable, "-m", "app.server", "--server.headless",
                                "true", "--server.port", str(port), "--server.fileWatcherType", "none"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        kill_scheduler(runs)
        for run in list_runs(runs):  # leave no training process behind
            pid = run.recorded_status().get("pid")
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("e2e") / "runs"
    with streamlit_server(runs) as url:
        yield url, runs


def new_page(browser, url: str):
    """A fresh browser context (a new Streamlit session) on the app's home page."""
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_text("AdvLab", exact=True).first.wait_for()
    return page


@pytest.fixture
def page(browser, server):
    page = new_page(browser, server[0])
    yield page
    page.context.close()


def open_train(page):
    page.get_by_role("link", name="Train").first.click()
    page.get_by_role("button", name="Start training").wait_for()


def settled(page) -> None:
    """The form as a person starts typing into it: the runs view gone, the form's rerun over and none of
    its old copy left. While a rerun is under way Streamlit still shows the elements of the last one,
    faded, and what is typed into such a stale copy is gone when the new one replaces it."""
    playwright.expect(page.get_by_text(re.compile(r"^All runs \("))).to_have_count(0, timeout=60_000)
    settled_script(page)
    playwright.expect(page.get_by_label("Epochs", exact=True)).to_have_count(1)
    page.get_by_role("button", name="Start training").wait_for()


def settled_script(page) -> None:
    """The page's script run over, and no faded element of an earlier run left."""
    page.wait_for_function("""() => {
        const app = document.querySelector('[data-testid="stApp"]');
        return app && !['running', 'rerunRequested'].includes(app.getAttribute('data-test-script-state'))
            && !document.querySelector('[data-stale="true"]');
    }""", timeout=60_000)


def alerts(page) -> str:
    return " | ".join(page.locator('[data-testid="stAlert"]').all_inner_texts())


def start_run(page, name: str, epochs: int | None):
    page.get_by_role("radio", name="New run", exact=True).click()
    settled(page)
    page.get_by_label("Run name").fill(name)
    page.get_by_label("Training images (0 = all)").fill("1280")
    page.get_by_label("Validation images", exact=True).fill("200")
    page.get_by_label("Robust check images per epoch", exact=True).fill("100")
    if epochs is None:
        page.get_by_text("Until stopped", exact=True).click()
    else:
        page.get_by_label("Epochs", exact=True).fill(str(epochs))
    page.get_by_role("button", name="Start training").click()
    try:
        page.get_by_text(re.compile(f"Queued run \\S*-{re.escape(name)}-")).wait_for(timeout=120_000)  # this run's
    except playwright.TimeoutError:
        raise AssertionError(f"run {name} was not queued; the page says: {alerts(page)}") from None


def badge(page, status: str):
    """The status badge of the selected run (the runs table shows statuses too)."""
    return page.locator(".stMarkdownBadge", has_text=status).first


def run_named(runs: Path, name: str):
    matches = [run for run in list_runs(runs) if run.name() == name]
    assert len(matches) == 1, [run.name() for run in list_runs(runs)]
    return matches[0]


def queue_state(runs: Path) -> str:
    """What a time-out should say: every run's status and log tail, and the scheduler's log."""
    from advcore.jobs import scheduler

    lines = [f"{run.name()}: {run.recorded_status()}\n{run.log_tail(8)}" for run in list_runs(runs)]
    log = scheduler.log_path(runs)
    return "\n".join(lines + [log.read_text()[-2000:] if log.exists() else "no scheduler log"])


def test_train_a_tiny_run_and_see_its_history(page, server):
    open_train(page)
    start_run(page, "e2e-tiny", epochs=2)
    badge(page, "finished").wait_for(timeout=240_000)
    page.locator(".js-plotly-plot").nth(1).wait_for()  # the live loss and accuracy charts
    page.get_by_role("link", name="History").first.click()
    page.wait_for_url("**/history**")
    page.get_by_text("Summary", exact=True).wait_for()
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for()
    assert "e2e-tiny" in chart.inner_text()  # the legend names the run
    assert chart.locator(".shapelayer path").count() >= 1  # its adversarial epochs are shaded


def test_stop_a_run_from_the_page(page, server):
    open_train(page)
    start_run(page, "e2e-stop", epochs=None)
    run = run_named(server[1], "e2e-stop")
    wait_for(lambda: len(run.history()) >= 2, timeout=240, describe=lambda: queue_state(server[1]))
    page.get_by_role("button", name="Stop", exact=True).click()
    badge(page, "stopped").wait_for(timeout=120_000)
    assert run.status()["status"] == "stopped" and len(run.history()) >= 2


def test_a_killed_run_shows_failed_with_its_log(page, server):
    open_train(page)
    start_run(page, "e2e-kill", epochs=None)
    run = run_named(server[1], "e2e-kill")
    wait_for(lambda: "epoch    1" in run.log_tail(), timeout=240,  # the epoch line follows its history row
             describe=lambda: queue_state(server[1]))
    os.kill(run.status()["pid"], signal.SIGKILL)
    badge(page, "failed").wait_for(timeout=60_000)
    page.get_by_text("ended without reporting").first.wait_for()
    page.get_by_text(re.compile(r"epoch\s+1\s")).first.wait_for()


def test_playground_upload_attack_and_download(page, tmp_path):
    from advcore.storage import images

    page.get_by_role("link", name="Playground").first.click()
    page.get_by_role("heading", name="Attack playground").wait_for()
    page.get_by_label("Model", exact=True).click()
    page.get_by_role("option", name="standard (bundled)").click()
    uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Image (PNG")
    uploader.locator('input[type="file"]').set_input_files(str(ROOT / "assets" / "samples" / "pullover.png"))
    page.get_by_text(re.compile(r"Pullover → \S+ \(true class unknown")).wait_for()  # no claim without a truth
    page.get_by_label("True class", exact=True).click()
    page.get_by_role("option", name="Pullover", exact=True).click()
    verdict = page.get_by_text(re.compile(r"Pullover → \S+.*: fooled"))
    verdict.wait_for()
    bars = page.locator(".js-plotly-plot").first
    bars.wait_for()
    clean, adversarial = bars.evaluate("chart => chart.data.map(trace => trace.x)")
    assert max(clean) > 0.5 and clean != adversarial  # the probabilities moved
    with page.expect_download() as download:
        page.get_by_role("button", name="Model input, PNG (28x28)").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "pullover-adversarial.png" and images.read_image(saved).shape == (28, 28, 1)
    sample = images.read_image(ROOT / "assets" / "samples" / "pullover.png")
    with page.expect_download() as download:  # the user's image at its own size, the perturbation resized
        page.get_by_role("button", name=re.compile(r"Your image, perturbed, PNG")).click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert images.read_image(saved).shape == sample.shape and saved.name.startswith("pullover-adversarial-")


def tick_row(page, row: int):
    """Ticks the selection box of a row of the runs table (drawn on a canvas: clicked by position)."""
    table = page.locator('[data-testid="stDataFrame"]').first
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    x, y = box["x"] + 17, box["y"] + 35 * (row + 1) + 17  # the tick box's centre; 35-pixel rows under a header
    page.mouse.move(x, y)
    page.mouse.click(x, y)


def test_start_training_with_a_ticked_row_shows_the_new_run(page, server):
    """Finding 1 of issue 21: the tick stayed on a row position, and the new run's row pushed another
    run under it, so the page switched to that run."""
    open_train(page)
    start_run(page, "e2e-older", epochs=1)
    start_run(page, "e2e-newer", epochs=1)
    older = run_named(server[1], "e2e-older")
    tick_row(page, [run.id for run in list_runs(server[1])].index(older.id))  # the table's order
    page.wait_for_url(f"**run={older.id}**")
    start_run(page, "e2e-newest", epochs=1)
    newest = run_named(server[1], "e2e-newest")
    page.wait_for_url(f"**run={newest.id}**")
    time.sleep(4)  # reruns after the submit must not switch to the run now under the old tick
    assert f"run={newest.id}" in page.url
    assert page.get_by_text(newest.id, exact=True).first.is_visible()  # the selected run's caption


PAGES = ("Home", "Train", "History", "Playground", "Evaluate", "Interpret", "Compare", "Augmentation study")
TRUNCATED = """() => Array.from(document.querySelectorAll(
    '[data-testid="stWidgetLabel"] p, [data-testid="stCheckbox"] p, [role="combobox"], [data-testid="stMetricValue"], '
    + '[data-testid="stDownloadButton"] button'))
  .filter(element => element.offsetParent !== null && element.scrollWidth > element.clientWidth + 1)
  .map(element => element.value || element.innerText)"""


def settle(page) -> None:
    """Waits until the page's script run (and its fragments) stopped drawing."""
    page.wait_for_timeout(1500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=120_000)
    page.wait_for_timeout(500)


def test_every_page_at_1400x900_is_whole_calm_and_offline(browser, server):
    """Issue 21: no select value or label cut off, no exception shown, and no request to any host
    but this machine, on every page (and on the Train page's two views and an attacked image)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    outside = []
    page.on("request", lambda request: outside.append(request.url)
            if not re.match(r"(https?|wss?)://(localhost|127\.0\.0\.1)[:/]|data:|blob:", request.url) else None)
    page.goto(server[0])
    page.get_by_text("AdvLab", exact=True).first.wait_for()
    seen = {}
    for name in PAGES:
        page.get_by_role("link", name=name, exact=True).first.click()
        settle(page)
        seen[name] = (page.evaluate(TRUNCATED), page.locator('[data-testid="stException"]').count())
        if name == "Train":
            page.get_by_role("radio", name="Runs", exact=True).click()
            settle(page)
            seen["Train: runs"] = (page.evaluate(TRUNCATED), page.locator('[data-testid="stException"]').count())
        if name == "Playground":
            page.get_by_text("Sample gallery", exact=True).click()
            page.get_by_text("Linf distance").wait_for(timeout=120_000)  # the sample attacked
            settle(page)
            seen["Playground: attacked"] = (page.evaluate(TRUNCATED),
                                            page.locator('[data-testid="stException"]').count())
    context.close()
    assert {name: found for name, found in seen.items() if found != ([], 0)} == {}
    assert outside == []


def test_the_train_form_shows_every_problem_at_once_and_starts_nothing(page, server):
    """Finding 2 of issue 21: a bad value hid the others, and an out-of-range one only turned red."""
    open_train(page)
    before = len(list_runs(server[1]))
    page.get_by_role("radio", name="New run", exact=True).click()
    for label, value in (("eps", "3"), ("Learning rate", "0"), ("Epochs", "0")):
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
        page.wait_for_timeout(700)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Not started: 3 problems to fix, each shown next to its field.").wait_for()
    for message in ("attack.eps: 3 is over the linf limit of 1", "optimizer.learning_rate: must be > 0",
                    "schedule.epochs: must lie in [1, 100000], got 0"):
        assert page.get_by_text(message).first.is_visible(), message
    assert len(list_runs(server[1])) == before
