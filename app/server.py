"""The dashboard's web server: `python -m app.server [--server.port N ...]` serves streamlit_app.py.

It is Streamlit's own server (`st.App`) with three mends. Two make a page's URL opened first (a
bookmark, a shared link, `/evaluate` after a restart) load like any other:
- A `pages/` folder beside the main script makes Streamlit treat the app as an old-style multipage
  app, pages named after their files, until `st.navigation` first runs. The first session's first
  run then looks for a page file named "evaluate", finds none and shows "page not found". Before
  any session starts, v1 routing is switched off here, as `st.navigation` itself does.
- The browser first looks for the server under the page's own path (`/evaluate/_stcore/health`,
  streamlit/streamlit#7074), two 404s. Each page's HTML here tells it the server's base, through
  the hook Streamlit gives hosts (`window.__streamlit.BACKEND_BASE_URL`).
The third keeps every download button the page shows working: media live in
`media_store.LingeringDownloads`, where a deleted download stays servable for a while.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import streamlit as st
from starlette.responses import HTMLResponse
from starlette.routing import Route
from streamlit.runtime import memory_media_file_storage
from streamlit.runtime.pages_manager import PagesManager

from advcore import devices
from app.media_store import LingeringDownloads
from app.navigation import PAGES

MAIN_SCRIPT = Path(__file__).resolve().parents[1] / "streamlit_app.py"
BASE_HINT = "<script>window.__streamlit = {BACKEND_BASE_URL: window.location.origin + '/'};</script>"


def page_html() -> str:
    index = (Path(st.__file__).parent / "static" / "index.html").read_text(encoding="utf-8")
    return index.replace("<head>", "<head>\n" + BASE_HINT, 1)


async def page(request) -> HTMLResponse:
    return HTMLResponse(page_html(), headers={"Cache-Control": "no-cache"})


@contextlib.asynccontextmanager
async def no_v1_pages(_app):
    PagesManager.uses_pages_directory = False
    yield


class Dashboard(st.App):
    def _create_runtime(self):
        # st.App takes no media store: it builds Streamlit's own, looked up by name in this call.
        streamlit_store = memory_media_file_storage.MemoryMediaFileStorage
        memory_media_file_storage.MemoryMediaFileStorage = LingeringDownloads
        try:
            return super()._create_runtime()
        finally:
            memory_media_file_storage.MemoryMediaFileStorage = streamlit_store


def options(argv: list[str]) -> dict:
    """`--server.port 8502 --server.headless true` -> Streamlit config overrides, as `streamlit run` takes them."""
    if len(argv) % 2 or not all(name.startswith("--") for name in argv[::2]):
        raise SystemExit("usage: python -m app.server [--section.option value ...]")
    return {name[2:]: _typed(value) for name, value in zip(argv[::2], argv[1::2])}


def _typed(text: str) -> bool | int | str:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return int(text) if text.isdigit() else text


def main(argv: list[str]) -> None:
    try:
        devices.server_gpus()
    except devices.DeviceError as error:
        raise SystemExit(f"python -m app.server: {error}") from None
    app = Dashboard(MAIN_SCRIPT, routes=[Route(f"/{path}", page) for path in PAGES], lifespan=no_v1_pages)
    app.run(config=options(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
