"""A page's URL opened first on a fresh server (a bookmark, a shared link): the page itself, with no
"page not found" modal and no error in the browser's console (see app/server.py for both causes)."""

import json

from playwright import sync_api as playwright
from test_browser import settled_script, streamlit_server

from advcore.storage.runs import Run


def open_directly(browser, url: str) -> tuple:
    """Opens `url` in a new browser session; returns the page and the console errors and failed
    requests it logs while loading."""
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.set_default_timeout(60_000)
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    page.goto(url)
    return page, problems


def test_evaluate_opened_first_on_a_fresh_server(browser, tmp_path):
    with streamlit_server(tmp_path / "runs") as url:
        page, problems = open_directly(browser, f"{url}/evaluate")
        playwright.expect(page.get_by_role("heading", name="Evaluate")).to_be_visible(timeout=60_000)
        settled_script(page)
        assert page.get_by_text("does not seem to exist").count() == 0
        assert problems == []
        page.get_by_role("link", name="Train").first.click()  # the navigation works from there
        playwright.expect(page.get_by_role("heading", name="Train")).to_be_visible(timeout=60_000)
        assert page.url == f"{url}/train"


def test_a_run_link_opens_that_run(browser, tmp_path):
    runs = tmp_path / "runs"
    run = Run.create({"name": "linked", "data": {}}, runs, "linked")
    (run.path / "status.json").write_text(json.dumps({"status": "stopped"}))
    with streamlit_server(runs, max_runs=0) as url:
        page, problems = open_directly(browser, f"{url}/train?run={run.id}")
        playwright.expect(page.get_by_role("heading", name="Train")).to_be_visible(timeout=60_000)
        settled_script(page)
        playwright.expect(page.get_by_text(run.id).first).to_be_visible(timeout=60_000)
        assert page.get_by_text("does not seem to exist").count() == 0
        assert problems == []
