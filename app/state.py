"""Page state that must survive a refresh lives on disk or in the URL; these helpers keep it there."""

from __future__ import annotations

import streamlit as st

from advcore.storage.runs import Run, RunError, runs_root


def root():
    return runs_root()


def selected_run() -> Run | None:
    """The run named in the URL (?run=...), if it exists: a refresh or a shared link shows it again."""
    run_id = st.query_params.get("run")
    if not run_id:
        return None
    try:
        return Run.open(run_id, root())
    except RunError:
        return None


def select_run(run_id: str | None) -> None:
    if run_id:
        st.query_params["run"] = run_id
    else:
        st.query_params.pop("run", None)
