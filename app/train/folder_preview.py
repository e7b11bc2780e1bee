"""What an image folder holds, shown on the Train page before training: classes, counts of the images
that decode, the files skipped with the reasons, and one sample per class at the chosen input size.
Listing a folder decodes nothing; a folder of up to PREVIEW_CHECK_LIMIT files is also decoded once to
find its damaged files (training's check, whose result training reuses), a larger one at training.
Both are cached for a minute, as the form's checks ask for them on every rerun."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import streamlit as st

from advcore.storage import data, folder_listing
from app.pictures import show_grid
from app.text import counted, literal
from app.train import run_views

SAMPLES_SHOWN = 10  # classes with a sample picture
SKIPPED_SHOWN = 200  # rows of a list of skipped files; the run's log holds them all
PREVIEW_CHECK_LIMIT = 5_000  # files decoded on the page to find the damaged ones; beyond, training finds them


@st.cache_data(ttl=60, show_spinner="Listing the folder...")
def listing(path: str) -> folder_listing.Listing | str:
    """The folder's listing, or why it cannot be used."""
    try:
        return folder_listing.scan(path)
    except (folder_listing.FolderError, OSError) as error:
        return str(error)


def problem(path: str) -> str | None:
    found = listing(path)
    return found if isinstance(found, str) else None


@st.cache_data(ttl=60, show_spinner="Checking that the images decode...")
def skipped(path: str) -> list[tuple[str, str, str]] | None:
    """(split, path, reason) of every file training will skip, or None for a folder too large to check here."""
    found = listing(path)
    if sum(len(paths) for paths, _ in found.splits.values()) > PREVIEW_CHECK_LIMIT:
        return None
    try:
        return [(file.split, file.path, file.reason) for file in data.folder_skipped(path)]
    except data.DatasetFormatError:  # no class has a readable image among its first: training says why
        return None


def training_count(path: str) -> int:
    """Images of a usable folder's training split, less its damaged files where they were checked."""
    found = listing(path)
    return int(readable_counts(found, {file for _, file, _ in skipped(path) or []})["train"].sum())


def readable_counts(found: folder_listing.Listing, skipped_paths: set[str]) -> pd.DataFrame:
    """Images per class (rows) and split (columns), less the skipped files."""
    counts = {}
    for split, (paths, labels) in found.splits.items():
        kept = np.asarray([os.fsdecode(path) not in skipped_paths for path in paths], bool)
        counts[split] = np.bincount(labels[kept], minlength=len(found.class_names))
    table = pd.DataFrame(counts, index=list(found.class_names))
    table.index.name = "class"
    return table


@st.cache_data(ttl=60, show_spinner="Reading sample images...")
def samples(path: str, image_size: int, fit: str) -> tuple[np.ndarray, list[str]]:
    """One image per class (the first that decodes), read as training will read it."""
    from advcore.storage import image_folder  # deferred: TensorFlow, for the samples only

    found = listing(path)
    paths, labels = found.splits["train"]
    try:
        height, width, channels = folder_listing.default_input_shape(found)
    except folder_listing.FolderError:  # no class has a readable image among its first: training says why
        return np.zeros((0, 1, 1, 1), np.float32), []
    decoding = image_folder.Decoding(image_size or height, image_size or width, channels, fit)
    pictures, captions = [], []
    for label, name in enumerate(found.class_names[:SAMPLES_SHOWN]):
        for file in paths[labels == label][:5]:
            if folder_listing.size_problem(os.fsdecode(file)):
                continue  # never decoded: training skips it too
            try:
                pictures.append(image_folder.LazyImages(np.asarray([file]), decoding)[0])
                captions.append(name)
                break
            except Exception:  # a damaged file: training skips it too; try the class's next one
                continue
    return np.asarray(pictures), captions


def show(path: str, image_size: int, fit: str) -> None:
    """Classes, counts and samples of a usable folder (its problems show under the field instead)."""
    found = listing(path)
    if isinstance(found, str):
        return
    bad = skipped(path)
    counts = readable_counts(found, {file for _, file, _ in bad or []})
    split_note = "its own train/val/test folders" if found.presplit else "a fixed split, 20% for testing"
    if bad is None:
        checked = (f"not yet checked for damaged files (more than {PREVIEW_CHECK_LIMIT:,}): training finds them, "
                   f"skips them and lists them on the run's page")
        if found.passed_over:
            checked += f"; {counted(len(found.passed_over), 'file')} of other formats passed over"
    else:
        checked = "every file decodes" if not bad else "the files skipped are listed below"
    st.caption(f"{len(found.class_names)} classes, {int(counts.to_numpy().sum()):,} images ({split_note}); "
               f"{checked}.")
    st.dataframe(counts, height=min(320, 38 + 35 * len(counts)))
    if bad:
        label, folder, table = run_views.skipped_summary(bad)
        with st.expander(label):
            skipped_table(folder, table)
    pictures, captions = samples(path, image_size, fit)
    if len(pictures):
        shape = pictures.shape[1:3]
        st.caption(f"One training image per class, as the model will see it ({shape[0]} x {shape[1]} px, {fit})"
                   + (f"; the first {SAMPLES_SHOWN} classes" if len(found.class_names) > SAMPLES_SHOWN else ""))
        show_grid(pictures, captions)


def skipped_table(folder: str, table: pd.DataFrame) -> None:
    """Skipped files with their reasons, wrapped to be read whole (`run_views.skipped_summary`'s table)."""
    if folder:
        st.caption(f"Files in {literal(folder)}")
    st.table(table.head(SKIPPED_SHOWN).set_index("split"))
    if len(table) > SKIPPED_SHOWN:
        st.caption(f"and {len(table) - SKIPPED_SHOWN:,} more, all named in the run's log")
