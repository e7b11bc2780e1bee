"""Streamlit glue shared by the pages (state, model registry, jobs, charts, pickers); each page's own
forms and views live in its folder (`train/`, `playground/`, `evaluate/`, `interpret/`, `study/`)."""
