"""What a user's image folder holds, found without decoding a pixel or importing TensorFlow: its
classes, its files by split (`train/`, `val/`, `test/` sub-folders, or a seeded split per class) and
the files of formats TensorFlow does not decode. The Train page lists a folder with this on every
rerun; `image_folder` streams the files it lists."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from advcore.storage.images import MAX_PIXELS

DECODED_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")  # what tf.io.decode_image reads
FOLDER_SPLITS = ("train", "val", "test")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "P;L"}
DEFAULT_SIDE = 256  # a folder's default input: the first image's size, its longer side at most this
HEADERS_TRIED = 5  # files per class whose headers may be read to find the default input size


class FolderError(ValueError):
    """A folder that cannot be used as a dataset, with the reason."""


@dataclasses.dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    split: str = ""  # "train", "val" or "test"; "" for a file in no split (one of another format)


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


SPLIT_SEED = 0


def scan(root: str | os.PathLike, *, test_fraction: float = 0.2) -> Listing:
    """Lists a folder's classes and files and splits them; decodes nothing. The split is the folder's,
    drawn with one fixed seed: every run and every evaluation of the folder sees the same test images,
    whatever seed a run trains with."""
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
    rng = np.random.default_rng(SPLIT_SEED)
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


def _header(path: str) -> tuple[int, int, str] | str:
    """(width, height, mode) from an image file's header, without decoding a pixel; else why not."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
            with Image.open(path) as image:
                return (*image.size, image.mode)
    except Image.DecompressionBombError:
        return "its header announces far too many pixels (a decompression bomb?)"
    except (OSError, ValueError, SyntaxError) as error:
        return f"its header cannot be read ({error})"


def size_problem(path: str) -> str:
    """Why a file must not be decoded because of the size its header announces; "" when it may be (a
    header that cannot be read is left to the decoding check, which names the damage)."""
    header = _header(path)
    if isinstance(header, str):
        return header if "decompression bomb" in header else ""
    width, height, _ = header
    if width * height > MAX_PIXELS:
        return f"its header announces {width} x {height} pixels, over the {MAX_PIXELS:,} AdvLab decodes"
    return ""


def default_input_shape(listing: Listing) -> tuple[int, int, int]:
    """(height, width, channels) a folder's images are read at when no size is given: the first readable
    training image's size, shrunk to a longer side of at most DEFAULT_SIDE (a 9000 x 9000 first image
    must not make every input 9000 x 9000), channels 1 when every class's first readable image is grayscale.
    Read from the headers only; a file whose header cannot be read, or announces too many pixels, is
    passed over for the next one of its class (a few at most)."""
    paths, labels = listing.splits["train"]
    headers = []
    for label in np.unique(labels):
        for path in map(os.fsdecode, paths[labels == label][:HEADERS_TRIED]):
            if not size_problem(path) and not isinstance(header := _header(path), str):
                headers.append(header)
                break
    if not headers:
        raise FolderError(f"{listing.root}: the first {HEADERS_TRIED} images of every class are unreadable")
    width, height, _ = headers[0]
    scale = min(1.0, DEFAULT_SIDE / max(width, height))
    channels = 1 if all(mode in _GRAY_MODES for *_, mode in headers) else 3
    return max(8, round(height * scale)), max(8, round(width * scale)), channels
