"""Shared fixtures: real Fashion-MNIST subsets and one small CNN trained on them once per session."""

import gc
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("ADVLAB_CACHE_DIR", tempfile.mkdtemp(prefix="advlab-cache-"))  # folder checks stay out of ~

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from advcore import models  # noqa: E402
from advcore.storage import data


@pytest.fixture(autouse=True, scope="module")
def _garbage_collector_skips_the_imports():
    """Freezes what is alive when a module starts (TensorFlow's, Keras's and Streamlit's millions of
    objects): otherwise every full collection walks them all, and the suite's Streamlit page tests ran
    three to four times slower late in a session than alone. Unfrozen at the module's end, so what the
    module leaves behind is collected at the next one's start."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(scope="session")
def fashion():
    return data.load("fashion_mnist", train_size=12000, test_size=1000, seed=0)


@pytest.fixture(scope="session")
def trained_model(fashion):
    """A standard (non-robust) small CNN, about 85% clean accuracy: enough to attack meaningfully."""
    keras.utils.set_random_seed(0)
    model = models.small_cnn()
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(fashion.train.x, fashion.train.y, batch_size=128, epochs=3, verbose=0)
    return model


@pytest.fixture(scope="session")
def trained_model_file(trained_model, tmp_path_factory):
    return models.save(trained_model, tmp_path_factory.mktemp("models") / "small.keras")


@pytest.fixture(scope="session")
def linear_pair():
    """A two-class linear model z = W x + b on 4x4x1 images, with known weights and inputs.

    For two classes the loss gradient is parallel to w_other - w_label, so the optimal attacks are
    known exactly: -eps*sign(w_label - w_other) in Linf, -eps*(w_label - w_other)/||.||_2 in L2.
    Inputs sit at 0.5 +- 0.2 so a budget up to 0.25 never touches the [0, 1] box.
    """
    rng = np.random.default_rng(7)
    weights = rng.normal(size=(16, 2)).astype(np.float32)
    bias = (np.array([0.05, -0.05]) - 0.5 * weights.sum(axis=0)).astype(np.float32)  # boundary near 0.5
    inputs = keras.Input((4, 4, 1))
    logits = keras.layers.Dense(2, name="linear")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, logits)
    model.get_layer("linear").set_weights([weights, bias])
    x = (0.5 + rng.uniform(-0.2, 0.2, size=(64, 4, 4, 1))).astype(np.float32)
    y = np.argmax(x.reshape(64, -1) @ weights + bias, axis=1)  # the model is right on every sample
    return model, weights, bias, x, y


@pytest.fixture
def advcore_process(tmp_path):
    """A real `python -m advcore` process of this user (a scheduler of an empty runs root, which idles):
    what a run's own process looks like from outside, for runs that must read as live."""
    from advcore.jobs import scheduler
    from helpers import wait_for

    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-m", "advcore", "scheduler", "--runs-dir", str(tmp_path / "other"),
                                "--idle-exit", "600"], cwd=root, env=os.environ | {"PYTHONPATH": str(root)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (tmp_path / "other" / scheduler.LOCK_FILE).exists(), 30)
    yield process
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium (installed by tests/setup.sh) under Playwright, one per test module."""
    import shutil

    from playwright import sync_api as playwright

    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield chromium
        chromium.close()
