"""The dashboard starts, says what AdvLab is, and links to every page."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def test_home_page_renders_and_links_the_pages():
    app = AppTest.from_file(str(ROOT / "streamlit_app.py")).run(timeout=30)
    assert not app.exception
    text = " ".join(block.value for block in app.markdown)
    assert "AdvLab" in text and "python -m advcore" in text
    links = {link.proto.label for link in app.get("page_link")}
    assert links == {"Start training", "Compare histories", "Attack an image", "Measure robustness",
                     "See what a model draws", "Standard vs robust, side by side",
                     "Compare augmentations: none, FGSM, GAN samples, unrestricted"}


def test_home_page_lists_the_bundled_models_with_their_cards():
    app = AppTest.from_file(str(ROOT / "streamlit_app.py")).run(timeout=30)
    labels = [expander.proto.label for expander in app.expander]
    names = ["standard", "pgd-linf", "fast-linf", "pgd-l2", "interleaved"]
    assert [label.split("**")[1] for label in labels] == [f"{name} (bundled)" for name in names]
    assert all("clean accuracy (10,000 test images)" in label for label in labels)
    cards = [block.value for block in app.markdown if block.value.startswith("# Model card")]
    assert [card.splitlines()[0] for card in cards] == [f"# Model card: {name}" for name in names]


def test_a_local_tool_binds_to_localhost_shows_no_deploy_button_and_caps_uploads():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost" and config["browser"]["gatherUsageStats"] is False
    assert config["client"]["toolbarMode"] == "minimal"  # no Deploy button
    from advcore.storage import images
    from app import histories, registry

    caps = [images.MAX_UPLOAD_BYTES // 2**20, histories.MAX_CSV_MEGABYTES, registry.MAX_MODEL_BYTES // 2**20]
    assert max(caps) == config["server"]["maxUploadSize"]  # each uploader's own cap fits under the server's


def test_the_step_chart_keeps_its_legend_off_the_subplot_titles():
    import numpy as np

    from app import attack_charts

    figure = attack_charts.step_figure(np.zeros(5), np.full((5, 3), 1 / 3), {"a": 0, "b": 1}, "ce objective")
    assert figure.layout.legend.y < 0 and figure.layout.legend.yanchor == "top"  # under the plots


def test_the_server_takes_streamlit_options_as_streamlit_run_does():
    from app import server

    assert server.options(["--server.port", "8502", "--server.headless", "False", "--server.fileWatcherType",
                           "none"]) == {"server.port": 8502, "server.headless": False, "server.fileWatcherType": "none"}
    for wrong in (["--server.port"], ["server.port", "8502"]):
        with pytest.raises(SystemExit, match="usage"):
            server.options(wrong)


def test_every_page_opened_by_url_gets_the_servers_base():
    from app import server

    html = server.page_html()
    assert html.index(server.BASE_HINT) < html.index("<script type=\"module\"")  # set before Streamlit loads
