"""Hostile model files through the server's path (`registry.save_upload`): each refused with its reason,
none kept, the server process never loading one; and the static checks' agreement with Keras."""

import keras
import pytest
from hostile_models import HOSTILE_MODELS, real_model

from advcore import models
from advcore.storage import model_files
from app import registry


@pytest.fixture
def uploads(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_UPLOADS_DIR", str(tmp_path / "uploads"))
    return tmp_path / "uploads"


@pytest.mark.parametrize("case", HOSTILE_MODELS)
def test_a_hostile_model_file_is_refused_with_its_reason_and_not_kept(uploads, case):
    make, words = HOSTILE_MODELS[case]
    with pytest.raises(registry.RegistryError) as refused:
        registry.save_upload(make(), "upload.keras")
    assert str(refused.value).startswith("upload.keras: ") and words in str(refused.value)
    assert "Traceback" not in str(refused.value) and len(str(refused.value).splitlines()) == 1
    assert list(uploads.glob("*")) == []


def test_the_parameter_cap_is_configurable(uploads, monkeypatch):
    monkeypatch.setenv(model_files.PARAMETERS_ENV, "5000")  # the real model has 7,850
    with pytest.raises(registry.RegistryError, match="upload.keras: 7,850 parameters, over the cap of 5,000"):
        registry.save_upload(real_model(), "upload.keras")
    monkeypatch.delenv(model_files.PARAMETERS_ENV)
    assert registry.save_upload(real_model(), "upload.keras").card["input_shape"] == [28, 28, 1]


def test_the_sandbox_reports_what_it_loaded(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(real_model())
    assert model_files.check_in_sandbox(path) == {"parameters": 7850, "input_shape": [28, 28, 1], "classes": 10}


def test_advcore_registered_classes_are_the_ones_the_check_allows():
    registered = {name for name in keras.saving.get_custom_objects() if name.startswith("advcore>")}
    assert registered == set(model_files.ADVCORE_CLASSES)
    for bundled in registry.BUNDLED_DIR.glob("*/model.keras"):  # every bundled model passes the static checks
        model_files.check_archive(bundled)
    models.load(next(registry.BUNDLED_DIR.glob("*/model.keras")))
