"""The Train form in Chromium as a fast typist uses it: each field typed at 25 ms a key, Tab, the next
one while the page still reruns for the last, and Start clicked at once. What was typed is what the
queued run's config.json holds. (The form once wrote every widget's value back on every rerun, so a
rerun still under way for one field sent the old value of the field being typed over the typing.)"""

import re

import pytest
from helpers import wait_for
from playwright import sync_api as playwright
from test_browser import alerts, new_page, open_train, settled, streamlit_server

from advcore.storage.runs import list_runs

FIELDS = ("Training images (0 = all)", "Validation images", "Epochs", "Batch size",
          "Learning rate")
ATTEMPTS = 4


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory):
    """A server whose runs are only queued, never trained: these tests read their configs back."""
    runs = tmp_path_factory.mktemp("form") / "runs"
    with streamlit_server(runs, max_runs=0) as url:
        yield url, runs


def type_into(page, label: str, text: str) -> None:
    """Types as a person does into the field on the screen: while a rerun redraws the form, Streamlit may
    still show the old copy of a field faded beside the new one, and a person types into the new one."""
    box = page.get_by_label(label, exact=True)
    playwright.expect(box).to_have_count(1)
    box.click()
    box.press("Control+a")
    box.press_sequentially(text, delay=25)
    box.press("Tab")


def typed_values(attempt: int) -> tuple:
    return 1000 + 37 * attempt, 100 + 3 * attempt, 2 + attempt, 48 + 8 * attempt, round(0.0101 + 0.0011 * attempt, 4)


@pytest.mark.parametrize("repeat", range(3))
def test_what_is_typed_fast_is_what_trains(browser, quiet_server, repeat):
    url, runs = quiet_server
    page = new_page(browser, url)
    try:
        open_train(page)
        page.get_by_role("radio", name="New run", exact=True).click()
        page.get_by_label("Mode", exact=True).click()
        page.get_by_role("option", name="vanilla", exact=True).click()
        settled(page)
        for attempt in range(ATTEMPTS):
            expected = typed_values(attempt)
            page.get_by_label("Run name").fill(f"typed-{repeat}-{attempt}")
            page.get_by_label("Run name").press("Tab")
            for label, value in zip(FIELDS, expected):
                type_into(page, label, str(value))
            before = {run.id for run in list_runs(runs)}
            page.get_by_role("button", name="Start training").click()
            (run_id,) = wait_for(lambda: {run.id for run in list_runs(runs)} - before, 60,
                                 describe=lambda: f"for the run of attempt {attempt}; the page says: {alerts(page)}")
            page.get_by_text(re.compile(f"Queued run {re.escape(run_id)}")).wait_for()
            config = next(run for run in list_runs(runs) if run.id == run_id).config()
            got = (config["data"]["train_size"], config["data"]["validation_size"], config["schedule"]["epochs"],
                   config["batch_size"], config["optimizer"]["learning_rate"])
            assert got == expected, f"attempt {attempt}: typed {expected}, queued {got}"
            page.get_by_role("radio", name="New run", exact=True).click()  # the draft is still there
            settled(page)
            assert page.get_by_label("Epochs", exact=True).input_value() == str(expected[2])
    finally:
        page.context.close()
