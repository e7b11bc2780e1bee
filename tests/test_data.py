"""Dataset loaders on the real Fashion-MNIST files and on small files in the MNIST/CIFAR formats."""

import gzip
import pickle
import struct

import numpy as np
import pytest

from advcore.storage import data, images


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_set(folder, n_train=30, n_test=10, side=28, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    for stem, array in arrays.items():
        raw = _idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


def _write_cifar_batch(path, n, label_key="labels", seed=0):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
             label_key.encode(): [int(v) for v in rng.integers(0, 10, n)]}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return batch


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """Isolates a test from the user's data folder, Keras cache and system folders."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr(data, "SYSTEM_DATA_DIRS", ())


def test_real_fashion_mnist(fashion):
    full = data.load("fashion_mnist", download=False)
    assert full.train.x.shape == (60000, 28, 28, 1) and full.test.x.shape == (10000, 28, 28, 1)
    assert full.train.x.dtype == np.float32 and 0 <= full.train.x.min() and full.train.x.max() == 1
    assert set(np.unique(full.test.y)) == set(range(10)) and np.all(np.bincount(full.test.y) == 1000)
    assert full.class_names[9] == "Ankle boot" and full.input_shape == (28, 28, 1)
    assert len(fashion.train) == 12000 and len(fashion.test) == 1000


def test_subsets_are_deterministic_and_drawn_from_the_split():
    a = data.load(test_size=50, train_size=10, seed=4)
    b = data.load(test_size=50, train_size=10, seed=4)
    c = data.load(test_size=50, train_size=10, seed=5)
    np.testing.assert_array_equal(a.test.x, b.test.x)
    assert not np.array_equal(a.test.y, c.test.y)
    full = data.load()
    assert any(np.array_equal(a.test.x[0], image) for image in full.test.x)


def test_mnist_npz_in_the_keras_cache(no_env, tmp_path):
    rng = np.random.default_rng(1)
    cache = tmp_path / "keras-home" / "datasets"
    cache.mkdir(parents=True)
    arrays = {"x_train": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, 20, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, 5, dtype=np.uint8)}
    np.savez(cache / "mnist.npz", **arrays)
    dataset = data.load("mnist", download=False)
    assert dataset.source == str(cache)
    np.testing.assert_array_equal(dataset.test.x[..., 0], arrays["x_test"] / np.float32(255))
    np.testing.assert_array_equal(dataset.train.y, arrays["y_train"])


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_in_the_user_data_dir(no_env, tmp_path, monkeypatch, gz):
    arrays = _write_idx_set(tmp_path / "mine" / "mnist", gz=gz)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "mine"))
    dataset = data.load("mnist", download=False)
    assert dataset.train.x.shape == (30, 28, 28, 1)
    np.testing.assert_array_equal(dataset.test.y, arrays["t10k-labels-idx1-ubyte"])


def test_cifar10_batches_in_keras3_layout(no_env, tmp_path):
    folder = tmp_path / "d" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = [_write_cifar_batch(folder / f"data_batch_{i}", 4, seed=i) for i in range(1, 6)]
    test = _write_cifar_batch(folder / "test_batch", 3, seed=9)
    dataset = data.load("cifar10", data_dir=tmp_path / "d", download=False)
    assert dataset.train.x.shape == (20, 32, 32, 3) and dataset.test.x.shape == (3, 32, 32, 3)
    # channel-first rows become HWC: pixel (0, 0) red, green, blue are data[0], data[1024], data[2048]
    expected = test[b"data"][0, [0, 1024, 2048]] / np.float32(255)
    np.testing.assert_array_equal(dataset.test.x[0, 0, 0], expected)
    np.testing.assert_array_equal(dataset.train.y[:4], batches[0][b"labels"])


def test_cifar100_fine_labels(no_env, tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _write_cifar_batch(folder / "train", 6, "fine_labels")
    _write_cifar_batch(folder / "test", 2, "fine_labels", seed=3)
    dataset = data.load("cifar100", data_dir=tmp_path, download=False)
    assert dataset.num_classes == 100 and dataset.test.x.shape == (2, 32, 32, 3)


def test_a_pickle_that_would_run_code_is_refused(no_env, tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _write_cifar_batch(folder / "train", 6, "fine_labels")
    (folder / "test").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(data.DatasetFormatError, match="refusing to load os.system"):
        data.load("cifar100", data_dir=tmp_path, download=False)


def test_truncated_idx_file_gives_a_clear_error(no_env, tmp_path):
    folder = tmp_path / "fashion-mnist"
    _write_idx_set(folder, gz=False)
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(data.DatasetFormatError, match="truncated or corrupt"):
        data.load("fashion_mnist", data_dir=tmp_path, download=False)


def test_corrupt_gzip_gives_a_clear_error(no_env, tmp_path):
    folder = tmp_path / "fashion-mnist"
    _write_idx_set(folder)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(data.DatasetFormatError, match="cannot be read"):
        data.load("fashion_mnist", data_dir=tmp_path, download=False)


def test_wrong_image_shape_gives_a_clear_error(no_env, tmp_path):
    _write_idx_set(tmp_path / "fashion-mnist", side=20)
    with pytest.raises(data.DatasetFormatError, match=r"images must be \(28, 28, 1\), found \(20, 20, 1\)"):
        data.load("fashion_mnist", data_dir=tmp_path, download=False)


def test_not_found_lists_every_place_tried_and_the_fix(no_env, tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.load("mnist", data_dir=tmp_path / "nowhere", download=False)
    message = str(error.value)
    assert "data_dir argument" in message and "nowhere" in message
    assert "Keras cache" in message and "keras.datasets download: not attempted" in message
    assert data.DATA_DIR_ENV in message


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        data.load("svhn")


def test_image_folder_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs", "owls"):
        (tmp_path / name).mkdir()
        for i in range(5):
            images.write_png(tmp_path / name / f"{i}.png", rng.uniform(0, 1, (8, 8, 3)))
    dataset = data.load(str(tmp_path))
    assert dataset.class_names == ("cats", "dogs", "owls")
    assert len(dataset.train) + len(dataset.test) == 15
    assert set(dataset.test.y) == {0, 1, 2} and dataset.input_shape == (8, 8, 3)
