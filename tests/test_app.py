"""The dashboard starts, says what AdvLab is, and links to every page."""

from pathlib import Path

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
