"""What an image folder holds, shown on the Train page before training: classes, counts, files passed
over and one sample per class at the chosen input size. Listing a folder decodes nothing; the samples
are a handful of decodes. The listing is cached for a minute, as the form's checks ask for it on every
rerun."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import streamlit as st

from advcore.storage import folder_listing
from app.pictures import show_grid
from app.text import counted

SAMPLES_SHOWN = 10  # classes with a sample picture


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
    counts = pd.DataFrame(found.counts(), index=list(found.class_names))
    counts.index.name = "class"
    split_note = "its own train/val/test folders" if found.presplit else "a seeded split, 20% for testing"
    st.caption(f"{len(found.class_names)} classes, {int(counts.to_numpy().sum()):,} images ({split_note}); "
               f"damaged files are found when training starts, skipped and listed in the run's log."
               + (f" Passed over: {counted(len(found.passed_over), 'file')} of other formats." if found.passed_over
                  else ""))
    st.dataframe(counts, height=min(320, 38 + 35 * len(counts)))
    pictures, captions = samples(path, image_size, fit)
    if len(pictures):
        shape = pictures.shape[1:3]
        st.caption(f"One training image per class, as the model will see it ({shape[0]} x {shape[1]} px, {fit})"
                   + (f"; the first {SAMPLES_SHOWN} classes" if len(found.class_names) > SAMPLES_SHOWN else ""))
        show_grid(pictures, captions)
