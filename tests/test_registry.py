"""The model registry: runs' models, uploads kept only when safe and usable."""

import keras
import pandas as pd
import pytest

from advcore import models
from advcore.storage.runs import Run
from app import registry


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.UPLOADS_ENV, str(tmp_path / "uploads"))
    return tmp_path


def keras_bytes(model, tmp_path) -> bytes:
    path = tmp_path / "m.keras"
    model.save(path)
    return path.read_bytes()


def test_a_good_upload_is_kept_with_a_card(folders):
    entry = registry.save_upload(keras_bytes(models.small_cnn(), folders), "my net.keras")
    assert entry.card["dataset"] == "fashion_mnist" and entry.card["input_shape"] == [28, 28, 1]
    assert entry.class_names[9] == "Ankle boot"
    assert [e.key for e in registry.list_models(folders / "runs") if e.source != "bundled"] == [entry.key]
    assert models.load(entry.path).count_params() == models.small_cnn().count_params()


def test_an_upload_with_custom_code_is_refused_and_not_kept(folders):
    lambda_model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda t: t * 2),
                                     keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(registry.RegistryError, match="evil.keras: it contains Python code"):
        registry.save_upload(keras_bytes(lambda_model, folders), "evil.keras")
    assert list((folders / "uploads").glob("*")) == []


@pytest.mark.parametrize("content, name, message", [
    (b"x", "model.h5", "takes Keras 3 `.keras` files"),
    (b"", "empty.keras", "the file is empty"),
    (b"not a zip archive", "junk.keras", "junk.keras: not a .keras file"),
])
def test_bad_model_files_are_refused(folders, content, name, message):
    with pytest.raises(registry.RegistryError, match=message):
        registry.save_upload(content, name)


def test_softmax_upload_is_used_through_its_logits(folders):
    inputs = keras.Input((32, 32, 3))
    softmax = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    entry = registry.save_upload(keras_bytes(softmax, folders), "soft.keras")
    assert entry.card["dataset"] == "cifar10"
    assert not models.outputs_probabilities(models.load(entry.path))


def test_only_finished_or_stopped_runs_with_a_model_are_offered(folders):
    root = folders / "runs"
    for name, status in (("done", "finished"), ("busy", "running"), ("halted", "stopped")):
        run = Run.create({"name": name, "mode": "vanilla", "data": {"dataset": "mnist"}}, root, name)
        run.write_history(pd.DataFrame({"epoch": [1], "phase": ["vanilla"], "val_accuracy": [0.9]}))
        models.save(models.small_cnn(), run.model_path)
        run.update_status(status=status)
    runs = [entry for entry in registry.list_models(root) if entry.source == "run"]
    offered = {entry.card["dataset"]: entry for entry in runs}
    labels = sorted(entry.label.split(" (")[0] for entry in runs)
    assert labels == ["done", "halted"]
    assert offered["mnist"].class_names[3] == "3" and offered["mnist"].card["metrics"]["last val_accuracy"] == 0.9


def test_bundled_models_have_complete_cards_and_load(folders):
    bundled = [entry for entry in registry.list_models(folders / "runs") if entry.source == "bundled"]
    assert {entry.key for entry in bundled} >= {"bundled:standard", "bundled:pgd-linf"}
    for entry in bundled:
        assert {"dataset", "input_shape", "class_names", "trained", "metrics"} <= set(entry.card)
        model = models.load(entry.path)
        assert list(model.inputs[0].shape[1:]) == entry.card["input_shape"]
        assert model.outputs[0].shape[-1] == len(entry.class_names)
        assert all(0 <= value <= 1 for value in entry.card["metrics"].values())


def test_a_damaged_card_hides_its_model_instead_of_breaking_the_list(folders):
    kept = registry.save_upload(keras_bytes(models.small_cnn(), folders), "good.keras")
    broken = registry.save_upload(keras_bytes(models.small_cnn(width=2), folders), "broken.keras")
    broken.path.with_suffix(".json").write_text("{ not json")
    uploads = [e.key for e in registry.list_models(folders / "runs") if e.source == "upload"]
    assert uploads == [kept.key]


def test_an_upload_of_variable_input_size_is_refused(folders):
    variable = keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(10)])
    with pytest.raises(registry.RegistryError, match=r"any.keras: it takes inputs of shape \(None, None, 3\)"):
        registry.save_upload(keras_bytes(variable, folders), "any.keras")
