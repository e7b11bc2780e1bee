"""A user's image folder, streamed: one sub-folder of images per class, any sizes, decoded on demand
(the listing, which needs no TensorFlow, is `folder_listing`'s).

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

from advcore.storage import files
from advcore.storage.folder_listing import Skipped, size_problem

FITS = ("crop", "pad", "stretch")
Fit = Literal["crop", "pad", "stretch"]
CACHE_ENV = "ADVLAB_CACHE_DIR"


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

    size = tf.cast(tf.shape(image)[:2], tf.float32)
    shrink = tf.reduce_min(tf.stack([height / size[0], width / size[1]]))  # the strongest downscaling

    def resize(target):
        """Bilinear; antialiased only when shrinking more than twofold, where aliasing shows (it halves
        the pipeline's speed on ImageNet-sized photos)."""
        return tf.cond(shrink < 0.5, lambda: tf.image.resize(image, target, antialias=True),
                       lambda: tf.image.resize(image, target))

    def fitted():
        if decoding.fit == "stretch":
            return resize((height, width))
        scale = tf.maximum(height / size[0], width / size[1]) if decoding.fit == "crop" else \
            tf.minimum(height / size[0], width / size[1])
        scaled = resize(tf.cast(tf.math.ceil(size * scale), tf.int32) if decoding.fit == "crop" else
                        tf.minimum(tf.cast(tf.math.round(size * scale), tf.int32), (height, width)))
        return tf.image.resize_with_crop_or_pad(scaled, height, width)  # crops "crop", pads "pad", centred

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
    """(positions of the files that decode, the others with the reason), cached by the files' listing. A
    file whose header announces more pixels than AdvLab decodes is passed over unread."""
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
    too_large = {i: problem for i, path in enumerate(paths) if (problem := size_problem(os.fsdecode(path)))}
    rest = np.asarray([i for i in range(len(paths)) if i not in too_large], np.int64)
    undecodable = rest[_undecodable(paths[rest], channels)].tolist() if len(rest) else []
    bad = sorted([*too_large, *undecodable])
    skipped = [Skipped(os.fsdecode(paths[i]), too_large.get(i) or _reason(paths[i], channels)) for i in bad]
    cache.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(cache, {"undecodable": [[s.path, s.reason] for s in skipped]})
    keep = np.ones(len(paths), bool)
    keep[bad] = False
    return np.flatnonzero(keep), skipped
