"""The Evaluate page's views of one evaluation: progress while it runs, then its results."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from advcore.evaluation import plans, robustness
from advcore.storage import files
from advcore.storage.runs import LIVE_STATUSES, Run, RunError
from app import attack_charts, jobs
from app.text import literal
from app.train import run_views

COMPONENTS = {"apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR", "apgd-t": "APGD-T", "fab-t": "FAB-T", "square": "Square"}
CERTIFIED = ("A certified row is the smoothed classifier's certified accuracy at each L2 radius (randomized "
             "smoothing, Cohen et al. 2019): images whose smoothed class is right and certified at least that far, "
             "an abstention counting as wrong. With probability 1 - alpha per image no perturbation inside the "
             "radius changes that class. It describes the base model under Gaussian noise of its sigma, and bounds "
             "that model's robust accuracy from below, as an attack bounds it from above.")
MASKING = ("A flag means the attack may be failing rather than the model being robust (gradient masking): "
           "the robust accuracy shown is then an overestimate. Try more steps, restarts, the margin loss, "
           "or a gradient-free attack before trusting it.")


def status_of(job: Run) -> dict:
    try:
        return job.status()
    except RunError as error:
        return {"status": "damaged", "error": str(error)}


def read_results(job: Run) -> dict | None:
    try:
        return files.read_json(job.path / "results.json", "results")
    except files.FileProblem:
        return None  # none yet, or being replaced


def progress(job: Run, cells_shown: int | None = None) -> None:
    """Status and progress bar, redrawn every second while the job is live; `cells_shown`, for an
    evaluation, is the number of finished cells the page shows below (the page reruns when it grows)."""
    status = status_of(job)
    colour = {"finished": "green", "stopped": "orange", "failed": "red", "damaged": "red"}.get(status["status"], "blue")
    st.markdown(f"Status: :{colour}-badge[{status['status']}]")
    if status["status"] in LIVE_STATUSES:
        where = job.progress()
        fraction, text = progress_text(status["status"], where)
        st.progress(fraction, text=text)
        for shard_fraction, shard_text in shard_lines(where):
            st.progress(shard_fraction, text=shard_text)
        if cells_shown is not None and cell_count(read_results(job)) != cells_shown:
            st.rerun()  # a cell finished: draw the results with it (this fragment redraws only the bar)
        if status["status"] != "stopping" and st.button("Stop", key="stop-evaluation"):
            st.toast(f"evaluation {jobs.stop_evaluation(job)}")
    elif st.session_state.get("polled_evaluation") == job.id:
        st.session_state["polled_evaluation"] = None
        st.rerun()  # just ended: draw the results once
    if status["status"] in ("failed", "damaged"):
        st.error(literal(status.get("error") or "the evaluation failed"))
        st.code(job.log_tail() or "(no log)", language=None)


def progress_text(status: str, where: dict) -> tuple[float, str]:
    """The bar's fraction and its text: image-attacks done of all, what runs now, time spent and left.
    The bar and the time left follow the work's cost (`advcore.evaluation.tracking`)."""
    if status == "queued" or "total" not in where:
        return 0.0, "queued: waiting for the worker" if status == "queued" else where.get("cell", "starting")
    done, total = where.get("done", 0), where["total"]
    fraction = min(1.0, where.get("fraction", done / total))
    count = f"{fraction:.0%}" if where.get("unit") == "%" else f"{done:,} of {total:,} {where.get('unit', 'units')}"
    parts = [count, where.get("cell"), where.get("stage")]
    if "elapsed" in where:
        left = f", about {run_views.duration(where['elapsed'] * (1 - fraction) / fraction)} left" if fraction else ""
        parts.append(f"{run_views.duration(where['elapsed'])} elapsed{left}")
    return fraction, " · ".join(part for part in parts if part)


def shard_lines(where: dict) -> list[tuple[float, str]]:
    """A sharded job's bar per shard (`advcore.evaluation.shards.combined`, checked by `Run.progress`):
    its fraction and "images 0-49: 120 of 200 · what it runs" (a profile's: "images 0-49: 40% · ...")."""
    lines = []
    for shard in where.get("shards", []):
        fraction = min(1.0, shard.get("fraction", 0.0))
        count = (f"{fraction:.0%}" if where.get("unit") == "%" else
                 f"{shard.get('done', 0):,.0f} of {shard.get('total', 0):,.0f}")
        parts = (f"{shard.get('label', 'shard')}: {count}", shard.get("cell"), shard.get("stage"))
        lines.append((fraction, literal(" · ".join(filter(None, parts)))))
    return lines


def autoattack_breakdown(row: dict) -> str:
    """"APGD-CE broke 8.1%, APGD-T 0.9%, ...": the share of all images each component broke."""
    parts, left = [], row["clean_accuracy"]
    for name, after in robustness.accuracy_after(row).items():
        parts.append(f"{COMPONENTS.get(name, name)} {'broke ' if not parts else ''}{left - after:.1%}")
        left = after
    return ", ".join(parts)


def cell_count(content: dict | None) -> int:
    return len((content or {}).get("cells") or [])


def results(job: Run, content: dict | None) -> None:
    """The finished cells of `content` (`read_results`): the page reads them once for this and for
    `progress`, which reruns the page when their number changes."""
    if not content or not content.get("cells"):
        st.caption("No finished cells yet.")
        return
    cells = pd.DataFrame(content["cells"])
    class_columns = [c for c in cells.columns if c.startswith("class ")]
    for flag in content.get("flags", []):
        st.warning(f"**{flag['model']} / {flag['attack']}: {flag['code'].replace('_', ' ')}**: {flag['message']}")
    if content.get("flags"):
        st.caption(MASKING)
    elif content.get("sanity"):
        st.success(f"Gradient-masking checks found nothing suspicious for {', '.join(content['sanity'])}.")
    clean = cells.groupby("model", sort=False)["clean_accuracy"].first()
    st.dataframe(clean.rename("clean accuracy").to_frame().T, column_config={
        m: st.column_config.NumberColumn(format="percent") for m in clean.index})
    st.plotly_chart(attack_charts.robustness_figure(cells), key="curves")
    if any(attack.get("method") == plans.CERTIFY for attack in content.get("plan", {}).get("attacks", [])):
        st.caption(CERTIFIED)
    eps_values = sorted(cells["eps"].unique())
    eps = st.select_slider("eps for the matrix and the per-class view", eps_values, value=eps_values[-1],
                           format_func=lambda e: f"{e:.4g}", key="matrix-eps")
    at = cells[cells["eps"] == eps]
    matrix = at.pivot_table(index="model", columns="attack", values="robust_accuracy", sort=False)
    st.markdown(f"**Robust accuracy at eps {eps:.4g}** (rows: models, columns: attacks)")
    st.dataframe(matrix, column_config={a: st.column_config.NumberColumn(format="percent") for a in matrix.columns})
    for row in at.to_dict(orient="records"):
        if robustness.accuracy_after(row):
            st.markdown(f"**{row['model']} / {row['attack']}**: robust accuracy {row['robust_accuracy']:.1%} of "
                        f"{row['clean_accuracy']:.1%} clean; {autoattack_breakdown(row)}.")
    st.plotly_chart(attack_charts.per_class_figure(cells, eps, class_columns), key="per-class")
    d1, d2 = st.columns(2)
    d1.download_button("Download results (CSV)", cells.to_csv(index=False), f"{job.id}.csv", "text/csv",
                       key="download-csv", on_click="ignore")
    d2.download_button("Download results and plan (JSON)", json.dumps(content, indent=2), f"{job.id}.json",
                       "application/json", key="download-json", on_click="ignore")
