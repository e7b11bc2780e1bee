"""A user's image folder, streamed: one sub-folder of images per class, any sizes, decoded on demand.

Only file paths and labels stay in memory; pixels are decoded, resized and cropped (or padded) to one
input size inside tf.data, in parallel, batch by batch, so memory does not grow with the folder.
A folder with `train/` and `test/` (and optionally `val/`) sub-folders keeps that split; any other
folder is split per class with a fixed seed. Files TensorFlow cannot decode (unknown formats, empty,
truncated or corrupt files) are found once, by decoding every file, skipped and listed with the
reason; the finding is cached by the folder's listing, so a later run of the same files does not
decode them twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import Literal

import numpy as np
import tensorflow as tf
from PIL import Image

from advcore.storage import files

DECODED_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")  # what tf.io.decode_image reads
FOLDER_SPLITS = ("train", "val", "test")
FITS = ("crop", "pad", "stretch")
Fit = Literal["crop", "pad", "stretch"]
CACHE_ENV = "ADVLAB_CACHE_DIR"
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "P;L"}


class FolderError(ValueError):
    """A folder that cannot be used as a dataset, with the reason."""


@dataclasses.dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How every image of a folder becomes a model input: (height, width, channels) and the fit."""
    height: int
    width: int
    channels: int
    fit: Fit = "crop"

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, self.channels


def decode(raw: tf.Tensor, decoding: Decoding) -> tf.Tensor:
    """Encoded image bytes -> float32 (height, width, channels) in [0, 1].

    "crop" scales the shorter side to the input and cuts the centre (the usual ImageNet evaluation),
    "pad" scales the longer side and pads with black, "stretch" ignores the aspect ratio. An image
    already of the input's size is passed through untouched, pixel for pixel."""
    image = tf.io.decode_image(raw, channels=decoding.channels, expand_animations=False)
    image = tf.cast(image, tf.float32) / 255.0  # the built-in sets' scaling, to the last bit
    height, width = decoding.height, decoding.width

    def fitted():
        if decoding.fit == "stretch":
            return tf.image.resize(image, (height, width), antialias=True)
        if decoding.fit == "pad":
            return tf.image.resize_with_pad(image, height, width, antialias=True)
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.maximum(height / size[0], width / size[1])
        scaled = tf.cast(tf.math.ceil(size * scale), tf.int32)
        return tf.image.resize_with_crop_or_pad(tf.image.resize(image, scaled, antialias=True), height, width)

    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], (height, width)))
    out = tf.cond(same, lambda: image, fitted)
    return tf.clip_by_value(tf.ensure_shape(out, decoding.shape), 0.0, 1.0)


def _read_and_decode(decoding: Decoding):
    return lambda path: decode(tf.io.read_file(path), decoding)


class LazyImages:
    """The images of a list of files, decoded when indexed: `images[i]`, `images[a:b]`,
    `images[index_array]` give float32 arrays; `shape` and `len` cost nothing. Consumers written for
    in-memory arrays (attacks over slices, the Playground's picker) read a folder through it."""

    def __init__(self, paths: np.ndarray, decoding: Decoding):
        self.paths, self.decoding = paths, decoding

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.decoding.shape)

    @property
    def ndim(self) -> int:
        return 4

    dtype = np.dtype(np.float32)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self[np.asarray([index])][0]
        chosen = self.paths[index]
        if len(chosen) == 0:
            return np.zeros((0, *self.decoding.shape), np.float32)
        batches = (tf.data.Dataset.from_tensor_slices(chosen)
                   .map(_read_and_decode(self.decoding), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                   .batch(len(chosen)))
        return batches.get_single_element().numpy()

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype or np.float32, copy=False)


@dataclasses.dataclass(frozen=True)
class FolderSplit:
    """Image files with their labels; pixels are decoded only when read."""
    paths: np.ndarray  # bytes (file-system encoded), (N,)
    y: np.ndarray  # int64, (N,)
    decoding: Decoding

    def __len__(self) -> int:
        return len(self.y)

    @property
    def x(self) -> LazyImages:
        return LazyImages(self.paths, self.decoding)

    def take(self, index) -> "FolderSplit":
        return FolderSplit(self.paths[index], self.y[index], self.decoding)

    def read(self, index_batches: tf.data.Dataset) -> tf.data.Dataset:
        """(images, labels) batches of the files in `index_batches` (a dataset of index vectors), in
        that order; several batches are decoded at once."""
        paths, labels = tf.constant(self.paths), tf.constant(self.y)
        one = _read_and_decode(self.decoding)
        signature = tf.TensorSpec(self.decoding.shape, tf.float32)

        def batch(index):
            return tf.map_fn(one, tf.gather(paths, index), fn_output_signature=signature), tf.gather(labels, index)
        return index_batches.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


@dataclasses.dataclass(frozen=True)
class Listing:
    """What a folder holds, found without decoding a pixel: classes, files by split, files passed over."""
    root: Path
    class_names: tuple[str, ...]
    splits: dict  # split name -> (paths, labels); "train" and "test" always, "val" when the folder has one
    passed_over: tuple[Skipped, ...]  # files of formats TensorFlow does not decode
    presplit: bool  # whether the split came from train/ val/ test/ sub-folders

    def counts(self) -> dict[str, list[int]]:
        """Images per class, per split."""
        return {name: np.bincount(labels, minlength=len(self.class_names)).tolist()
                for name, (_, labels) in self.splits.items()}


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _image_files(class_dir: Path, passed_over: list) -> list[Path]:
    found = []
    for path in sorted(class_dir.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() in DECODED_SUFFIXES:
            found.append(path)
        else:
            passed_over.append(Skipped(str(path), f"not an image format TensorFlow decodes "
                                                  f"({', '.join(DECODED_SUFFIXES)})"))
    return found


def _classes_of(folder: Path, passed_over: list) -> dict[str, list[Path]]:
    classes = {d.name: _image_files(d, passed_over) for d in _class_dirs(folder)}
    if len(classes) < 2:
        raise FolderError(f"{folder}: needs at least two class sub-folders (one per class, holding its images), "
                          f"found {len(classes)}")
    if empty := [name for name, found in classes.items() if not found]:
        raise FolderError(f"{folder}: no images in the class folder{'s' if len(empty) > 1 else ''} "
                          f"{', '.join(empty)} (formats read: {', '.join(DECODED_SUFFIXES)})")
    return classes


def _as_arrays(classes: dict[str, list[Path]], names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    paths = [os.fsencode(path) for name in names for path in classes.get(name, [])]
    labels = [label for label, name in enumerate(names) for _ in classes.get(name, [])]
    return np.asarray(paths, dtype=bytes), np.asarray(labels, dtype=np.int64)  # bytes: a quarter of str's memory


def scan(root: str | os.PathLike, *, test_fraction: float = 0.2, seed: int = 0) -> Listing:
    """Lists a folder's classes and files and splits them; decodes nothing."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FolderError(f"{root}: no such folder")
    if not 0 < test_fraction < 1:
        raise FolderError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    passed_over: list[Skipped] = []
    if (root / "train").is_dir() and (root / "test").is_dir():
        parts = {name: _classes_of(root / name, passed_over) for name in FOLDER_SPLITS if (root / name).is_dir()}
        names = tuple(parts["train"])
        for name, classes in parts.items():
            if unknown := sorted(set(classes) - set(names)):
                raise FolderError(f"{root / name}: classes {', '.join(unknown)} are not in {root / 'train'}")
        return Listing(root, names, {name: _as_arrays(classes, names) for name, classes in parts.items()},
                       tuple(passed_over), True)
    classes = _classes_of(root, passed_over)
    names = tuple(classes)
    rng = np.random.default_rng(seed)
    chosen = {"train": {}, "test": {}}
    for name, found in classes.items():
        if len(found) < 2:
            raise FolderError(f"{root / name}: needs at least two images (one to train on, one to test), found 1")
        order = rng.permutation(len(found))
        n_test = min(len(found) - 1, max(1, round(test_fraction * len(found))))
        chosen["test"][name] = [found[i] for i in sorted(order[:n_test])]
        chosen["train"][name] = [found[i] for i in sorted(order[n_test:])]
    return Listing(root, names, {part: _as_arrays(found, names) for part, found in chosen.items()},
                   tuple(passed_over), False)


def first_image_shape(listing: Listing) -> tuple[int, int, int]:
    """(height, width, channels) of the first training image, channels 1 when every class's first
    image is grayscale (read from the headers only)."""
    paths, labels = listing.splits["train"]
    firsts = [paths[np.argmax(labels == label)] for label in np.unique(labels)]
    modes, width, height = [], None, None
    for path in firsts:
        try:
            with Image.open(os.fsdecode(path)) as image:
                modes.append(image.mode)
                width, height = (width, height) if width else image.size
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # a damaged file: found and reported by `verified`
    if height is None:
        raise FolderError(f"{listing.root}: the first image of every class is unreadable")
    return height, width, 1 if all(mode in _GRAY_MODES for mode in modes) else 3


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "advlab") / "folders"


def _fingerprint(paths: np.ndarray, channels: int) -> str:
    """Changes when any file is added, removed, rewritten or touched."""
    digest = hashlib.sha256(str(channels).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(path + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _undecodable(paths: np.ndarray, channels: int) -> list[int]:
    """Indices of the files TensorFlow fails to read or decode (one parallel decoding pass)."""
    def shorter_side(index, path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        return index, tf.reduce_min(tf.shape(image)[:2])

    def has_pixels(index, side):
        return side > 0

    def index_only(index, side):
        return index

    decoded = (tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
               .map(shorter_side, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
               .ignore_errors().filter(has_pixels).map(index_only)
               .batch(4096).prefetch(2))
    readable = np.zeros(len(paths), bool)
    for indices in decoded.as_numpy_iterator():
        readable[indices] = True
    return np.flatnonzero(~readable).tolist()


def _reason(path: bytes, channels: int) -> str:
    """Why TensorFlow cannot use a file, in its words less the op name."""
    try:
        raw = tf.io.read_file(path)
        if int(tf.strings.length(raw)) == 0:
            return "the file is empty"
        tf.io.decode_image(raw, channels=channels, expand_animations=False)
        return "it decodes to an empty image"
    except tf.errors.OpError as error:
        message = re.sub(r"\{\{.*?\}\}", "", error.message or type(error).__name__)
        return message.split(" [Op:")[0].strip().splitlines()[0]


def verified(paths: np.ndarray, channels: int, say=None) -> tuple[np.ndarray, list[Skipped]]:
    """(positions of the files that decode, the others with the reason), cached by the files' listing."""
    cache = cache_dir() / f"{_fingerprint(paths, channels)}.json"
    if cache.is_file():
        try:
            bad = files.read_json(cache, "folder check")["undecodable"]
            known = {path: reason for path, reason in bad}
        except (ValueError, KeyError, TypeError):
            known = None
        if known is not None:
            keep = np.asarray([os.fsdecode(path) not in known for path in paths], bool)
            return np.flatnonzero(keep), [Skipped(path, reason) for path, reason in known.items()]
    if say:
        say(f"checking that the {len(paths):,} image files decode (once per set of files)")
    bad = _undecodable(paths, channels)
    skipped = [Skipped(os.fsdecode(paths[i]), _reason(paths[i], channels)) for i in bad]
    cache.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(cache, {"undecodable": [[s.path, s.reason] for s in skipped]})
    keep = np.ones(len(paths), bool)
    keep[bad] = False
    return np.flatnonzero(keep), skipped
