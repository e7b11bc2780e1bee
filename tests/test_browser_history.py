"""History's downloads in Chromium: four runs overlaid, smoothing moved before each click. Each click
gives the file (issue 30, finding 7: a file made on click was a Streamlit "deferred" download, whose
link the rerun after a change voided)."""

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


def test_the_merged_csv_downloads_on_every_click_even_during_a_rerun(browser, history_server):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{history_server}/history")
    settled_script(page)
    for i in range(RUNS - 1):  # the newest run is chosen already
        choose = page.locator("[data-testid=stMultiSelect] input").first
        choose.click()
        choose.fill(f"overlaid-{i}")
        page.get_by_role("option", name=f"overlaid-{i}", exact=False).first.click()
        page.keyboard.press("Escape")
        settled_script(page)
    smoothing = page.get_by_role("slider").first
    smoothing.focus()
    for _ in range(5):  # 0.25
        smoothing.press("ArrowRight")
    settled_script(page)
    received = []
    for attempt in range(7):
        smoothing.press("ArrowLeft" if attempt % 2 else "ArrowRight")  # each change reruns the page
        settled_script(page)
        with page.expect_download(timeout=15_000) as download:
            page.get_by_role("button", name="Download the merged history (CSV)").click()
        received.append(pd.read_csv(io.StringIO(open(download.value.path()).read())))
    assert len(received) == 7
    for merged in received:
        assert merged["run"].nunique() == RUNS and len(merged) == RUNS * EPOCHS
    context.close()
