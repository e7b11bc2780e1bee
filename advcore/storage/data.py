"""Image-classification datasets as float32 NHWC arrays in [0, 1] with int labels.

Built-in datasets are looked for, in order, in a folder the user names (argument or
``ADVLAB_DATA_DIR``), the Keras cache, the system dataset folders (Debian's
``dataset-fashion-mnist``), and last downloaded through ``keras.datasets``. Every file is parsed
here, with its size and header checked, so a truncated download gives a clear error instead of a
numpy traceback, and CIFAR's pickles are read without letting them run code.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

DATA_DIR_ENV = "ADVLAB_DATA_DIR"
SYSTEM_DATA_DIRS = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


# The perturbation budgets the robustness literature reports for each dataset; others get CIFAR's.
STANDARD_EPS = {"mnist": {"linf": 0.3, "l2": 2.0}, "fashion_mnist": {"linf": 0.1, "l2": 1.5},
                "cifar10": {"linf": 8 / 255, "l2": 0.5}, "cifar100": {"linf": 8 / 255, "l2": 0.5}}


def standard_eps(dataset: str | None, norm: str) -> float:
    return STANDARD_EPS.get(dataset, STANDARD_EPS["cifar10"])[norm]


class DatasetError(Exception):
    """Base class of the data errors a user can act on."""


class DatasetNotFoundError(DatasetError):
    """No source had the dataset; the message lists what was tried and how to fix it."""


class DatasetFormatError(DatasetError):
    """A dataset file exists but is truncated, corrupt or of the wrong shape."""


@dataclasses.dataclass(frozen=True)
class Split:
    """Images held in memory. A folder's images are an `image_folder.FolderSplit`, which reads its files
    on demand; both have `x` (indexable images), `y`, `len`, `take` and `read`."""
    x: np.ndarray  # float32, (N, H, W, C), values in [0, 1]
    y: np.ndarray  # int64, (N,)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index) -> "Split":
        return Split(self.x[index], self.y[index])

    def read(self, index_batches):
        """(images, labels) batches of the samples in `index_batches`, a tf.data dataset of index vectors."""
        import tensorflow as tf  # deferred: the built-in sets' readers need numpy only

        images, labels = tf.constant(self.x), tf.constant(self.y)
        return index_batches.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))


def batches(split, batch_size: int):
    """Every sample of a split, in order, as (images, labels) batches of a tf.data dataset."""
    import tensorflow as tf

    return split.read(tf.data.Dataset.range(len(split)).batch(batch_size)).prefetch(tf.data.AUTOTUNE)


SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    train: Split | None  # None when the split was not asked for (`load(splits=...)`): its files stay unread
    test: Split | None
    class_names: tuple[str, ...]
    source: str  # where the files were found, for display and provenance
    validation: Split | None = None  # a folder's own val/ sub-folder; otherwise held out of train
    skipped: tuple = ()  # image_folder.Skipped: files of a folder that could not be read

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple((self.train if self.test is None else self.test).x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclasses.dataclass(frozen=True)
class _Spec:
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    read: Callable[[Path, tuple[str, ...]], dict | None]  # root, splits -> {split: (x, y)}, None if absent
    download: Callable[[], tuple]  # keras.datasets loader: x_train, y_train, x_test, y_test
    system_subdirs: tuple[str, ...] = ()


# --------------------------------------------------------------------------- file formats

def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetFormatError(f"{path}: cannot be read ({error}); delete it and fetch it again") from error


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format: magic, dimensions, then uint8 data), gzip or raw."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetFormatError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    rank = raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise DatasetFormatError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{rank}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DatasetFormatError(
            f"{path}: IDX header announces shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes; the file is truncated or corrupt, fetch it again"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


_IDX_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _read_idx_set(folder: Path, splits: tuple[str, ...]) -> dict | None:
    """The MNIST-style IDX files of `splits` in ``folder`` (gzip or not), or None if any is absent."""
    paths = {split: [_first_existing(folder, (stem + ".gz", stem)) for stem in _IDX_STEMS[split]] for split in splits}
    if any(path is None for pair in paths.values() for path in pair):
        return None
    return {split: tuple(read_idx(path) for path in pair) for split, pair in paths.items()}


def _read_mnist_npz(path: Path, splits: tuple[str, ...]) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {split: (archive[f"x_{split}"], archive[f"y_{split}"]) for split in splits}
    except (OSError, ValueError, KeyError, zlib.error, EOFError) as error:
        raise DatasetFormatError(f"{path}: not a readable mnist.npz ({error}); fetch it again") from error


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; allow the numpy array rebuilders and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = _NumpyOnlyUnpickler(handle, encoding="bytes").load()
        batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key])
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, KeyError, TypeError,
            ValueError) as error:
        raise DatasetFormatError(f"{path}: not a readable CIFAR batch ({error}); fetch it again") from error
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetFormatError(
            f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape} and {len(labels)}"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _find_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


# --------------------------------------------------------------------------- readers by dataset

def _read_fashion_mnist(root: Path, splits: tuple[str, ...]):
    folder = _find_dir(root, ("fashion-mnist", "fashion_mnist", "."))
    return _read_idx_set(folder, splits) if folder else None


def _read_mnist(root: Path, splits: tuple[str, ...]):
    npz = _first_existing(root, ("mnist.npz",))
    if npz is not None:
        return _read_mnist_npz(npz, splits)
    folder = _find_dir(root, ("mnist",))
    return _read_idx_set(folder, splits) if folder else None


def _cifar_reader(folder_name: str, train_files: tuple[str, ...], test_file: str, label_key: str):
    names = {"train": train_files, "test": (test_file,)}

    def read(root: Path, splits: tuple[str, ...]):
        folder = _find_dir(root, (folder_name, f"{folder_name}-target/{folder_name}",
                                  f"{folder_name}_extracted/{folder_name}", "."))
        if folder is None or not any((folder / name).is_file() for split in splits for name in names[split]):
            return None
        missing = [name for split in splits for name in names[split] if not (folder / name).is_file()]
        if missing:
            raise DatasetFormatError(f"{folder}: incomplete, missing {', '.join(missing)}")
        arrays = {}
        for split in splits:
            parts = [_read_cifar_batch(folder / name, label_key) for name in names[split]]
            arrays[split] = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return arrays
    return read


def _keras_download(module_name: str, **kwargs):
    def download():
        import keras  # deferred: importing Keras costs seconds and is only needed here

        return tuple(np.asarray(a) for pair in getattr(keras.datasets, module_name).load_data(**kwargs)
                     for a in pair)
    return download


_SPECS = {
    "fashion_mnist": _Spec(FASHION_MNIST_CLASSES, (28, 28, 1), _read_fashion_mnist,
                           _keras_download("fashion_mnist"), ("fashion-mnist",)),
    "mnist": _Spec(MNIST_CLASSES, (28, 28, 1), _read_mnist, _keras_download("mnist"), ("mnist",)),
    "cifar10": _Spec(CIFAR10_CLASSES, (32, 32, 3),
                     _cifar_reader("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                                   "test_batch", "labels"),
                     _keras_download("cifar10"), ("cifar-10", "cifar10")),
    "cifar100": _Spec(CIFAR100_CLASSES, (32, 32, 3),
                      _cifar_reader("cifar-100-python", ("train",), "test", "fine_labels"),
                      _keras_download("cifar100", label_mode="fine"), ("cifar-100", "cifar100")),
}
DATASETS = tuple(_SPECS)
CLASS_NAMES = {name: spec.class_names for name, spec in _SPECS.items()}


def available(dataset: str | None) -> bool:
    """Whether a model's dataset can be read here: a built-in set's name, or a folder that exists."""
    return bool(dataset) and (dataset in DATASETS or Path(dataset).expanduser().is_dir())


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _candidate_roots(name: str, data_dir: str | os.PathLike | None) -> list[tuple[str, Path]]:
    roots = []
    user_dir = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if user_dir:
        label = "data_dir argument" if data_dir is not None else f"${DATA_DIR_ENV}"
        roots.append((label, Path(user_dir).expanduser()))
    roots.append(("Keras cache", keras_cache_dir()))
    for system_dir in SYSTEM_DATA_DIRS:
        for subdir in _SPECS[name].system_subdirs:
            roots.append(("system datasets", system_dir / subdir))
    return roots


def _to_split(name: str, images: np.ndarray, labels: np.ndarray, where: str) -> Split:
    """Checks raw uint8 arrays against the dataset's shape and scales them to float32 [0, 1]."""
    spec = _SPECS[name]
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    labels = np.asarray(labels).reshape(-1)
    if images.shape[1:] != spec.image_shape:
        raise DatasetFormatError(
            f"{where}: {name} images must be {spec.image_shape}, found {images.shape[1:]}")
    if len(images) != len(labels):
        raise DatasetFormatError(f"{where}: {len(images)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= len(spec.class_names)):
        raise DatasetFormatError(
            f"{where}: labels must lie in 0..{len(spec.class_names) - 1}, "
            f"found {labels.min()}..{labels.max()}")
    return Split(images.astype(np.float32) / np.float32(255.0), labels.astype(np.int64))


BUILT_IN_VALIDATION = 5000  # validation images held out of a built-in training split
FOLDER_VALIDATION_SHARE = 0.1  # ... and the share held out of a folder dataset's training split


def default_validation_size(dataset: Dataset) -> int:
    if dataset.name in _SPECS:
        return BUILT_IN_VALIDATION
    return max(1, round(FOLDER_VALIDATION_SHARE * len(dataset.train)))


def hold_out(split: Split, size: int, seed: int = 0) -> tuple[Split, Split]:
    """(the rest, `size` held-out samples): a seeded split of a training split, so validation never
    sees a training image nor the test split. The held-out set depends only on (split, size, seed)."""
    if not 0 <= size < len(split):
        raise ValueError(f"cannot hold out {size} validation images from a training split of {len(split)}")
    order = np.random.default_rng(seed).permutation(len(split))
    return split.take(np.sort(order[size:])), split.take(np.sort(order[:size]))


def subset(split: Split, size: int | None, seed: int = 0) -> Split:
    """A deterministic random subset of ``size`` samples (all of them if size is None)."""
    if size is None or size >= len(split):
        return split
    if size <= 0:
        raise ValueError(f"subset size must be positive, got {size}")
    return split.take(np.sort(np.random.default_rng(seed).permutation(len(split))[:size]))


def _subset_if_read(split: Split | None, size: int | None, seed: int) -> Split | None:
    return None if split is None else subset(split, size, seed)


def load(name: str = "fashion_mnist", *, data_dir: str | os.PathLike | None = None,
         train_size: int | None = None, test_size: int | None = None, seed: int = 0,
         download: bool = True, splits: tuple[str, ...] = SPLITS, image_size: int | tuple[int, int] | None = None,
         fit: str = "crop", say=None) -> Dataset:
    """Loads a built-in dataset by name (in memory), or streams a folder of class sub-folders given by
    its path (`image_size` and `fit` apply to folders only); only the `splits` asked for are read
    (training reads no test file)."""
    if unknown := set(splits) - set(SPLITS):
        raise ValueError(f"unknown split {sorted(unknown)[0]!r}: choose from {', '.join(SPLITS)}")
    if name not in _SPECS:
        if is_folder(name):
            return load_image_folder(name, train_size=train_size, test_size=test_size, seed=seed, splits=splits,
                                     image_size=image_size, fit=fit, say=say)
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)} "
                         "or give the path of a folder with one sub-folder of images per class")
    spec = _SPECS[name]
    tried = []
    arrays, source = None, None
    for label, root in _candidate_roots(name, data_dir):
        if not root.is_dir():
            tried.append(f"{label} {root}: no such folder")
            continue
        arrays = spec.read(root, splits)
        if arrays is not None:
            source = str(root)
            break
        tried.append(f"{label} {root}: no {name} files there")
    if arrays is None and download:
        try:
            x_train, y_train, x_test, y_test = spec.download()
            arrays = {"train": (x_train, y_train), "test": (x_test, y_test)}
            source = "keras.datasets download"
        except Exception as error:  # any network or archive failure means: not available
            tried.append(f"keras.datasets download: {type(error).__name__}: {error}")
    elif arrays is None:
        tried.append("keras.datasets download: not attempted (download=False)")
    if arrays is None:
        raise DatasetNotFoundError(
            f"{name} was not found. Tried:\n  - " + "\n  - ".join(tried) +
            f"\nFix: put the Keras-format files in a folder and pass it as data_dir or set "
            f"{DATA_DIR_ENV}; or connect to the internet so keras.datasets can download them" +
            ("; or install Debian's dataset-fashion-mnist package" if name == "fashion_mnist" else ""))
    parts = {split: _to_split(name, *arrays[split], source) if split in splits else None for split in SPLITS}
    return Dataset(
        name=name,
        train=_subset_if_read(parts["train"], train_size, seed),
        test=_subset_if_read(parts["test"], test_size, seed),
        class_names=spec.class_names,
        source=source,
    )


def is_folder(name: str) -> bool:
    """Whether `name` names an image folder rather than a built-in dataset."""
    return name not in _SPECS and Path(name).expanduser().is_dir()


def folder_skipped(path: str | os.PathLike, *, test_fraction: float = 0.2, say=None) -> list:
    """Every file of an image folder that AdvLab skips, with its split and the reason (`Skipped`): files
    of other formats, and the files of every split that do not decode, the test split's too, so that they
    are named before the test set is read. The same check as loading, cached with it: no file is decoded
    twice."""
    from advcore.storage import folder_listing, image_folder  # deferred: TensorFlow, needed for folders only

    try:
        listing = folder_listing.scan(path, test_fraction=test_fraction)
        channels = folder_listing.default_input_shape(listing)[2]
    except folder_listing.FolderError as error:
        raise DatasetFormatError(str(error)) from None
    skipped = list(listing.passed_over)
    for part, (paths, _) in listing.splits.items():
        skipped += [dataclasses.replace(file, split=part) for file in image_folder.verified(paths, channels, say)[1]]
    return skipped


def load_image_folder(path: str | os.PathLike, *, test_fraction: float = 0.2,
                      train_size: int | None = None, test_size: int | None = None, seed: int = 0,
                      splits: tuple[str, ...] = SPLITS, image_size: int | tuple[int, int] | None = None,
                      fit: str = "crop", say=None) -> Dataset:
    """A user's folder of class sub-folders, streamed (see `image_folder`): images of any size become
    `image_size` squares, or (height, width) (default: the first image's size, at most 256 a side), fitted by
    `fit`. Files
    that do not decode are skipped and listed in `Dataset.skipped`; a class left without images is an
    error."""
    from advcore.storage import folder_listing, image_folder  # deferred: TensorFlow, needed for folders only

    if fit not in image_folder.FITS:
        raise ValueError(f"fit must be one of {', '.join(image_folder.FITS)}, got {fit!r}")
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    if size is not None and not (len(size) == 2 and all(isinstance(side, int) and 8 <= side <= 1024 for side in size)):
        raise ValueError(f"image_size must be a whole number of pixels from 8 to 1024, got {image_size!r}")
    try:
        listing = folder_listing.scan(path, test_fraction=test_fraction)
        height, width, channels = folder_listing.default_input_shape(listing)
    except folder_listing.FolderError as error:
        raise DatasetFormatError(str(error)) from None
    decoding = image_folder.Decoding(*(size or (height, width)), channels, fit)
    skipped = list(listing.passed_over)
    read = {}
    for part in ("train", "val", "test"):
        if part not in listing.splits or (part == "val" and "train" not in splits) or (
                part != "val" and part not in splits):
            continue
        paths, labels = listing.splits[part]
        keep, bad = image_folder.verified(paths, channels, say)
        skipped += [dataclasses.replace(file, split=part) for file in bad]
        present = set(labels[keep].tolist())
        if part == "train" and (empty := [name for c, name in enumerate(listing.class_names) if c not in present]):
            raise DatasetFormatError(f"{listing.root}: no readable training image of class {', '.join(empty)} "
                                     f"({len(bad)} of the training files do not decode)")
        read[part] = image_folder.FolderSplit(paths[keep], labels[keep], decoding)
    return Dataset(
        name=listing.root.name,
        train=_subset_if_read(read.get("train"), train_size, seed),
        test=_subset_if_read(read.get("test"), test_size, seed),
        class_names=listing.class_names,
        source=str(listing.root),
        validation=read.get("val"),
        skipped=tuple(skipped),
    )
