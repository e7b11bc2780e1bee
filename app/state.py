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


def from_url(widget_key: str, param: str, allowed) -> None:
    """Before a widget is drawn: its value from the URL (?param=...) when this session has none yet and
    the URL's value is one of `allowed`, so a reload or a shared link shows the same choice."""
    value = st.query_params.get(param)
    if widget_key not in st.session_state and value is not None:
        match = next((option for option in allowed if str(option) == value), None)
        if match is not None:
            st.session_state[widget_key] = match


def to_url(widget_key: str, param: str) -> None:
    """A widget's on_change: its value into the URL."""
    st.query_params[param] = str(st.session_state[widget_key])
