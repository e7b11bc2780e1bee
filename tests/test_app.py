"""The dashboard starts and its home page says what AdvLab is."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def test_home_page_renders():
    app = AppTest.from_file(str(ROOT / "streamlit_app.py")).run(timeout=30)
    assert not app.exception
    text = " ".join(block.value for block in app.markdown)
    assert "AdvLab" in text and "python -m advcore attack" in text
