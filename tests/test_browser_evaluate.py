"""Evaluate's progress in Chromium, read as a person watching it (issue 30, finding 3): the count of
image-attacks has one total from the first reading to the last and never goes back, the running
AutoAttack component is named, and the finished cell shows while the gradient-masking checks run
(the page redraws its results when the bar, polled each second, sees a new finished cell)."""

import re
import time
from pathlib import Path

from helpers import kill_worker
from test_browser import streamlit_server

from advcore.evaluation import plans, worker

ROOT = Path(__file__).resolve().parents[1]
ROBUST = str(ROOT / "assets" / "models" / "pgd-linf" / "model.keras")
COUNT = re.compile(r"([\d,]+) of ([\d,]+) image-attacks")


def test_the_progress_counts_image_attacks_with_a_fixed_total(browser, tmp_path):
    runs = tmp_path / "runs"
    plan = plans.Plan.from_dict({"models": [{"label": "robust", "path": ROBUST}],
                                 "attacks": [{"name": "aa", "method": "autoattack",
                                              "options": {"version": ["apgd-ce", "apgd-t"]}}],
                                 "eps": {"linf": [0.1]}, "count": 60, "batch_size": 30, "sanity": True})
    job = worker.submit(plan, runs, "watched")  # queued; the page starts the worker
    with streamlit_server(runs, max_runs=0) as url:
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{url}/evaluate?evaluation={job.id}")
            readings = []
            deadline = time.monotonic() + 300
            while job.recorded_status()["status"] not in ("finished", "failed") and time.monotonic() < deadline:
                bar = page.locator('[data-testid="stProgress"]')
                texts = bar.all_inner_texts()
                readings.append((" ".join(texts), page.locator('[data-testid="stMain"]').inner_text()))
                page.wait_for_timeout(150)
        finally:
            kill_worker(runs)
        assert job.recorded_status()["status"] == "finished", job.log_tail()
    counts = [tuple(int(n.replace(",", "")) for n in COUNT.search(text).groups()) for text, _ in readings
              if COUNT.search(text)]
    assert counts, [text for text, _ in readings]
    assert {total for _, total in counts} == {60 * 2 + 60 * 6}  # 2 components, 6 check passes, from the start
    assert [done for done, _ in counts] == sorted(done for done, _ in counts)
    texts = [text for text, _ in readings]
    assert any("apgd-t (2 of 2)" in text for text in texts) and any("gradient-masking checks" in t for t in texts)
    during_checks = [main for text, main in readings if "gradient-masking checks" in text]
    assert during_checks and "No finished cells yet" not in during_checks[-1]  # shown within a poll (1 s)
    assert not any("Queued evaluation" in main for _, main in readings)
