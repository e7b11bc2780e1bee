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
    assert model_files.check_in_sandbox(path) == {"parameters": 7850, "input_shape": [28, 28, 1], "classes": 10,
                                                  "output_activation": None}


def test_advcore_registered_classes_are_the_ones_the_check_allows():
    registered = {name for name in keras.saving.get_custom_objects() if name.startswith("advcore>")}
    assert registered == set(model_files.ADVCORE_CLASSES)
    for bundled in registry.BUNDLED_DIR.glob("*/model.keras"):  # every bundled model passes the static checks
        model_files.check_archive(bundled)
    models.load(next(registry.BUNDLED_DIR.glob("*/model.keras")))


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_an_activated_output_is_accepted_with_a_warning_and_a_softmax_may_be_kept(uploads, activation):
    import numpy as np

    from app import model_widgets

    content = real_model(keras.layers.Flatten(), keras.layers.Dense(10, activation=activation))
    entry = registry.save_upload(content, "activated.keras")
    assert entry.card["output_activation"] == activation and activation in entry.card["warning"]
    images = np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    outputs = np.asarray(model_widgets.load_model(entry)(images))
    if activation == "sigmoid":  # used as it is, with the warning: only a softmax has logits to return to
        assert ((outputs > 0) & (outputs < 1)).all()
    else:
        assert (outputs < 0).any()  # the logits under the softmax
    if activation == "softmax":
        kept = registry.save_upload(content, "activated.keras", keep_softmax=True)
        assert kept.card["keep_softmax"] and "kept" in kept.card["warning"]
        assert np.allclose(np.asarray(model_widgets.load_model(kept)(images)).sum(axis=1), 1, atol=1e-5)


def test_check_model_by_hand_keeps_its_limits_and_says_so_for_a_model(tmp_path):
    """`python -m advcore check-model` run in a terminal limits itself as the app's sandbox does, and its
    refusal speaks of the model, not of batch sizes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hostile_models import HOSTILE_MODELS

    root = Path(__file__).resolve().parents[1]
    path = tmp_path / "huge.keras"
    path.write_bytes(HOSTILE_MODELS["3,000,000-unit Dense"][0]())
    result = subprocess.run([sys.executable, "-m", "advcore", "check-model", str(path)], cwd=root, capture_output=True,
                            text=True, timeout=300, env=os.environ | {"PYTHONPATH": str(root)})
    assert result.returncode != 0 and "batch size" not in result.stderr
    assert "loading it runs out of" in result.stderr, result.stderr[-1500:]
