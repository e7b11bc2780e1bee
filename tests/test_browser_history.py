"""History's merged CSV in Chromium, four runs overlaid, clicked while the smoothing slider's reruns
are under way (issue 30, finding 7). Each arrow key reruns the page and cuts the last run short; two
cut-short runs in a row made Streamlit delete the file behind the button the page still showed, so
the click's download failed. The dashboard's media store keeps such a file (app/media_store.py)."""

import io

import pandas as pd
import pytest
from test_browser import settled_script, streamlit_server

from advcore.storage.runs import Run

RUNS = 4
EPOCHS = 12


def make_run(root, name: str) -> Run:
    run = Run.create({"name": name, "mode": "adversarial", "data": {"dataset": "fashion_mnist"}}, root, name)
    epochs = range(1, EPOCHS + 1)
    run.write_history(pd.DataFrame({
        "epoch": epochs, "phase": ["vanilla", "adversarial"] * (EPOCHS // 2), "loss": [1.0 / e for e in epochs],
        "accuracy": 0.5, "val_loss": [1.1 / e for e in epochs], "val_accuracy": [0.6 + 0.01 * e for e in epochs],
        "val_robust_accuracy": 0.3, "learning_rate": 1e-3, "eps": 0.1, "seconds": 2.0, "warning": ""}))
    run.update_status(status="finished", started="2026-11-21T10:00:00+00:00", ended="2026-11-21T10:01:00+00:00")
    return run


@pytest.fixture(scope="module")
def history_server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("history") / "runs"
    for i in range(RUNS):
        make_run(runs, f"overlaid-{i}")
    with streamlit_server(runs, max_runs=0) as url:
        yield url


def overlay(page, name: str) -> None:
    """Adds a run and waits until the server has drawn it: the multiselect sends its choice only as it
    closes, so the page can look settled before that rerun has begun."""
    choose = page.locator("[data-testid=stMultiSelect] input").first
    choose.click()
    choose.fill(name)
    page.get_by_role("option", name=name, exact=False).first.click()
    page.keyboard.press("Escape")
    page.wait_for_function("""name => {
        const chart = document.querySelector('.js-plotly-plot');
        return chart && chart.data && chart.data.some(trace => (trace.name || '').startsWith(name + ' ('));
    }""", arg=name)
    settled_script(page)


def test_the_merged_csv_downloads_when_clicked_amid_reruns(browser, history_server):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{history_server}/history")
    settled_script(page)
    for i in range(RUNS - 1):  # the newest run is chosen already
        overlay(page, f"overlaid-{i}")
    smoothing = page.get_by_role("slider").first
    smoothing.focus()
    for _ in range(5):  # 0.25, as reported
        smoothing.press("ArrowRight")
    settled_script(page)
    received = []
    for attempt in range(8):
        for key in ("ArrowRight", "ArrowLeft", "ArrowRight" if attempt % 2 else "ArrowLeft"):
            smoothing.press(key)  # three reruns, each cutting the last short
        if attempt % 4 == 3:
            settled_script(page)  # and a click on the page at rest
        with page.expect_download(timeout=15_000) as download:
            page.get_by_role("button", name="Download the merged history (CSV)").click()
        received.append(pd.read_csv(io.StringIO(open(download.value.path()).read())))
    for merged in received:
        assert merged["run"].nunique() == RUNS and len(merged) == RUNS * EPOCHS
    context.close()
