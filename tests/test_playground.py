"""The Playground page through AppTest: real uploads good and bad, real attacks on the bundled models."""

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import BAD_IMAGES, CLASSES, encode, write_mixed_folder
from PIL import Image
from streamlit.testing.v1 import AppTest

from advcore import models
from advcore.certification import smoothing
from advcore.storage import data
from advcore.storage.runs import Run
from app.playground import certificate_views

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (ROOT / "assets" / "samples").iterdir() if p.suffix != ".py")


@pytest.fixture
def playground(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ADVLAB_UPLOADS_DIR", str(tmp_path / "uploads"))
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=90)
    app.run()
    app.switch_page("pages/playground_page.py").run()
    app.selectbox(key="model").set_value("bundled:standard").run()
    return app


def messages(app) -> list[str]:
    assert not app.exception, app.exception[0].value
    return [e.value for e in app.error]


def verdict(app) -> str:
    return next(m.value for m in app.markdown if "-badge[" in m.value)


def upload(app, name: str, content: bytes):
    app.radio(key="image_source").set_value("Upload an image").run()
    app.file_uploader(key="image_upload").set_value((name, content, "image/png")).run()
    return app


def test_every_bad_image_gets_its_message_and_the_page_stays_usable(playground):
    cases = {kind: maker for kind, (maker, _) in BAD_IMAGES.items()}
    cases["too many bytes"] = lambda: b"\x89PNG\r\n\x1a\n" + bytes(11 * 2**20)
    expected = {kind: message for kind, (_, message) in BAD_IMAGES.items()} | {"too many bytes": "over the 10 MB limit"}
    for kind, make in cases.items():
        upload(playground, "photo.png", make())
        errors = messages(playground)
        assert len(errors) == 1 and expected[kind] in errors[0] and "photo.png" in errors[0], (kind, errors)
        assert not any("-badge[" in m.value for m in playground.markdown)
    playground.radio(key="image_source").set_value("Sample gallery").run()
    assert messages(playground) == [] and "prediction changed" in verdict(playground)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.suffix)
def test_each_image_format_is_attacked(playground, sample):
    upload(playground, sample.name, sample.read_bytes())
    assert messages(playground) == []
    assert playground.checkbox(key=next(k for k in _keys(playground) if k.startswith("invert-"))).value
    metrics = {m.label: m.value for m in playground.metric}
    assert float(metrics["Linf distance"]) <= 0.1 + 1e-4
    assert "-badge[" in verdict(playground)


def _keys(app) -> list[str]:
    return [w.key for w in app.checkbox]


def test_sixteen_bit_and_colour_images_are_converted(playground):
    deep = (np.tile(np.linspace(0, 65535, 40), (30, 1))).astype(np.uint16)
    upload(playground, "deep.png", encode(Image.fromarray(deep), "PNG"))
    assert messages(playground) == [] and "-badge[" in verdict(playground)
    colour = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    upload(playground, "colour.jpg", encode(Image.fromarray(colour), "JPEG"))
    assert messages(playground) == [] and "28x28x1" in playground.get("image")[0].proto.imgs[0].caption


@pytest.mark.parametrize("field, value, message", [
    ("eps", "-0.1", "eps must be >= 0"),
    ("eps", "lots", "not a number: 'lots'"),
    ("eps", "1.5", "larger than the whole [0, 1] image range"),
    ("steps", 0, "steps must lie in 1..1000"),
    ("steps", 5000, "steps must lie in 1..1000"),
    ("restarts", 500, "restarts must lie in 1..100"),
])
def test_out_of_range_attack_values_are_explained(playground, field, value, message):
    playground.radio(key="image_source").set_value("Sample gallery").run()
    if field == "eps":
        widget = next(w for w in playground.text_input if w.key.startswith("attack.eps."))
    else:
        widget = playground.number_input(key=f"attack.{field}")
    widget.set_value(value).run()
    errors = messages(playground)
    assert len(errors) == 1 and message in errors[0]
    assert not playground.get("plotly_chart")


def test_targeted_attack_on_a_test_image_reaches_its_target_in_255_units(playground):
    playground.radio(key="image_source").set_value("Test set").run()
    playground.selectbox(key="test_class").set_value("Trouser").run()
    playground.radio(key="attack.target").set_value("a chosen class").run()
    playground.selectbox(key="attack.target_class").set_value("Bag").run()
    playground.radio(key="attack.unit").set_value("/255").run()
    assert messages(playground) == []
    text = verdict(playground)
    assert "Trouser → Bag: reached the target Bag" in text
    assert float({m.label: m.value for m in playground.metric}["Linf distance"]) <= 0.1 * 255 / 255 + 1e-4
    assert [b.proto.label for b in playground.get("download_button")] == [
        "Model input, PNG (28x28)", "Model input, exact float32 array (.npy)",
        "Your image, perturbed, PNG (28x28)"]
    assert any("prepared for the model again, it is classified **Bag**" in c.value for c in playground.caption)


def test_bad_model_files_are_refused_on_the_page(playground, tmp_path):
    lambda_model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda t: t * 2),
                                     keras.layers.Flatten(), keras.layers.Dense(10)])
    lambda_model.save(tmp_path / "evil.keras")
    variable = keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(10)])
    variable.save(tmp_path / "any-size.keras")
    cases = {"junk.keras": (b"not a zip", "not a .keras file"),
             "evil.keras": ((tmp_path / "evil.keras").read_bytes(), "contains Python code (a Lambda layer"),
             "any-size.keras": ((tmp_path / "any-size.keras").read_bytes(), "takes inputs of shape (None, None, 3)")}
    playground.radio(key="image_source").set_value("Sample gallery").run()
    project_files = sorted(p.name for p in ROOT.iterdir())
    for name, (content, message) in cases.items():
        playground.file_uploader(key="model_upload").set_value((name, content, "application/octet-stream")).run()
        errors = messages(playground)
        assert len(errors) == 1 and f"Model not added: {name}: " in errors[0] and message in errors[0]
    assert list((tmp_path / "uploads").glob("*")) == []
    assert sorted(p.name for p in ROOT.iterdir()) == project_files  # nothing written outside the app's folders
    assert "-badge[" in verdict(playground)  # the page still attacks with the chosen model


def _attacked(model, x, label, **options):
    from advcore import attacks
    from advcore.attacks import trace

    return trace.trace(model, x[None], [label], attacks.pgd(0.1, steps=10, **options), seed=0,
                       target=options.get("target") and label).result


def test_verdicts_never_claim_more_than_is_known(trained_model, fashion):
    from app.playground.attack_views import verdict

    names = [f"c{i}" for i in range(10)]
    predictions = trained_model.predict(fashion.test.x[:200], verbose=0).argmax(axis=1)
    right = int(np.flatnonzero(predictions == fashion.test.y[:200])[0])
    wrong = int(np.flatnonzero(predictions != fashion.test.y[:200])[0])
    x, y, seen = fashion.test.x[right], int(fashion.test.y[right]), int(predictions[right])
    # no true class: the attack moves away from the prediction, and the verdict is about the prediction
    colour, badge, sentence = verdict(_attacked(trained_model, x, seen), False, names, None)
    assert badge in ("prediction changed", "prediction unchanged") and "true class unknown" in sentence
    # a target the model already predicts is nothing to do, not a success
    assert verdict(_attacked(trained_model, x, seen, target="targeted"), True, names, None)[:2] == (
        "gray", "nothing to do")
    # an image the model already got wrong is no success of the attack
    x_wrong, y_wrong = fashion.test.x[wrong], int(fashion.test.y[wrong])
    colour, badge, sentence = verdict(_attacked(trained_model, x_wrong, y_wrong), False, names, y_wrong)
    assert (colour, badge) == ("gray", "already misclassified") and f"this c{y_wrong} as" in sentence
    # a named true class that the model got right: fooled or not, in green or orange
    colour, badge, _ = verdict(_attacked(trained_model, x, y), False, names, y)
    assert (colour, badge) in (("green", "fooled"), ("orange", "not fooled"))


@pytest.mark.parametrize("method, shown, hidden", [
    ("FGSM: sign of the gradient", set(), {"Default step size", "Steps", "Restarts", "Seed of the random start"}),
    ("FGM: raw gradient times a constant", {"Constant c (gradient x c)"}, {"Default step size"}),
    ("PGD, Linf ball", {"Default step size", "Steps", "Restarts", "Seed of the random start"}, set()),
])
def test_only_the_attack_fields_that_apply_are_shown(playground, method, shown, hidden):
    playground.radio(key="image_source").set_value("Sample gallery").run()
    playground.selectbox(key="attack.method").set_value(method).run()
    labels = {w.label for kind in ("checkbox", "number_input", "text_input") for w in playground.main.get(kind)}
    assert shown <= labels and not hidden & labels, (shown - labels, hidden & labels)


def test_a_tiny_negative_objective_reads_as_zero():
    from app.playground.attack_views import objective_text

    assert (objective_text(-0.0001), objective_text(-0.0006), objective_text(1.23456)) == ("0.000", "-0.001", "1.235")


def test_a_reload_keeps_the_model_and_the_image(playground):
    """Finding 10 of issue 21: the choices live in the URL (and an upload in the uploads folder), so a
    reload, which starts a new session with the same URL, shows them again."""
    playground.selectbox(key="model").set_value("bundled:pgd-linf").run()
    playground.radio(key="image_source").set_value("Sample gallery").run()
    sample = playground.selectbox(key="sample").options[1]
    playground.selectbox(key="sample").set_value(sample).run()
    reloaded = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=90)
    for key, value in playground.query_params.items():
        reloaded.query_params[key] = value
    reloaded.run()
    reloaded.switch_page("pages/playground_page.py").run()
    assert (reloaded.selectbox(key="model").value, reloaded.radio(key="image_source").value,
            reloaded.selectbox(key="sample").value) == ("bundled:pgd-linf", "Sample gallery", sample)


def test_a_reload_keeps_an_uploaded_image(playground):
    content = (ROOT / "assets" / "samples" / "pullover.png").read_bytes()
    playground.radio(key="image_source").set_value("Upload an image").run()
    playground.file_uploader(key="image_upload").set_value(("my shirt.png", content, "image/png")).run()
    reloaded = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=90)
    for key, value in playground.query_params.items():
        reloaded.query_params[key] = value
    reloaded.run()
    reloaded.switch_page("pages/playground_page.py").run()
    assert any("my_shirt.png, uploaded earlier" in c.value for c in reloaded.caption)
    assert "Linf distance" in {m.label for m in reloaded.metric}  # and attacked, as before the reload
    reloaded.query_params["upload"] = "../../etc/passwd"  # only a kept upload's name is read
    reloaded.run()
    assert not any("uploaded earlier" in c.value for c in reloaded.caption)


def test_a_model_trained_on_a_folder_attacks_the_folders_test_images(playground, tmp_path):
    """A run on a user's folder (its classes and input shape recorded by its training) is offered with its
    class names, and the Test set picker reads the folder's test images at the model's input size."""
    folder = write_mixed_folder(tmp_path / "photos")
    run = Run.create({"name": "photos", "mode": "vanilla", "data": {"dataset": str(folder), "image_size": 32}},
                     tmp_path / "runs", "photos")
    models.save(models.small_cnn((32, 32, 3), 3), run.model_path)
    run.write_history(pd.DataFrame({"epoch": [1], "phase": ["vanilla"]}))
    run.update_status(status="finished", class_names=list(CLASSES), input_shape=[32, 32, 3])
    playground.run()
    playground.selectbox(key="model").set_value(f"run:{run.id}").run()
    playground.radio(key="image_source").set_value("Test set").run()
    assert playground.selectbox(key="test_class").options == ["any class", *CLASSES]
    playground.selectbox(key="test_class").set_value("dog").run()
    assert messages(playground) == [] and "dog" in verdict(playground)  # the untrained model may get it wrong


def test_a_chosen_target_starts_at_another_class_than_the_images(playground):
    """Finding 8 of issue 30: the target class defaulted to the first class, which may be the true one."""
    playground.radio(key="image_source").set_value("Test set").run()
    playground.selectbox(key="test_class").set_value("T-shirt/top").run()
    playground.radio(key="attack.target").set_value("a chosen class").run()
    assert playground.selectbox(key="attack.target_class").value == "Trouser"


def test_the_download_note_blames_resizing_only_for_an_attack_that_had_succeeded():
    from app.playground.attack_views import _own_verdict

    names = ["cat", "dog", "eel"]
    assert _own_verdict(names, 1, 1, succeeded=True) == ", as the attacked input."
    assert _own_verdict(names, 0, 1, succeeded=True) == ", not dog: resizing weakened the attack."
    assert "resizing" not in _own_verdict(names, 0, 1, succeeded=False)
    assert _own_verdict(names, 0, 1, succeeded=False).endswith("(the attack itself had not reached its goal).")


def test_the_certificate_sets_the_smoothed_class_and_radius_beside_the_attacks_size(playground):
    playground.radio(key="image_source").set_value("Test set").run()
    assert not [w for w in playground.number_input if w.key == "certify.sigma"]  # only once asked for
    playground.toggle(key="certify.on").set_value(True).run()
    assert messages(playground) == []
    shown = {m.label: m.value for m in playground.metric}
    assert shown["Smoothed class"] in ("abstains", *data.CLASS_NAMES["fashion_mnist"])
    assert float(shown["Certified L2 radius"]) >= 0
    assert float(shown["Attack's L2 size"]) == pytest.approx(float(shown["L2 distance"]), abs=2e-3)
    badges = [m.value for m in playground.markdown if "-badge[" in m.value and "certificate" in m.value]
    assert len(badges) == 1


@pytest.mark.parametrize("certified, radius, adversarial, distance, badge", [
    (smoothing.ABSTAIN, 0.0, 3, 0.1, "no certificate"),
    (1, 0.5, 3, 0.8, "outside the certificate"),
    (1, 0.5, 1, 0.3, "inside the certificate"),
    (1, 0.5, smoothing.ABSTAIN, 0.3, "inside the certificate"),
    (1, 0.5, 3, 0.3, "certificate beaten"),
])
def test_the_certificates_verdict_says_whether_the_attack_stayed_inside_it(certified, radius, adversarial, distance,
                                                                          badge):
    names = [f"class {k}" for k in range(10)]
    assert certificate_views.verdict(names, certified, radius, 0.6, adversarial, distance)[1] == badge


@pytest.mark.parametrize("card, sigma", [({"sigma": 0.5}, 0.5), ({}, 0.25), ({"sigma": "big"}, 0.25),
                                         ({"sigma": 99}, 0.25), ({"sigma": True}, 0.25)])
def test_a_cards_sigma_is_used_only_when_it_is_a_number_in_range(card, sigma):
    assert certificate_views.card_sigma(card) == sigma
