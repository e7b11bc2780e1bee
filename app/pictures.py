"""Small pictures in a grid with captions (class activations, a folder's samples): each enlarged to
about CELL_PIXELS, pixels kept square."""

from __future__ import annotations

import numpy as np
import streamlit as st

from advcore.storage import images

CELL_PIXELS = 84


def cell(image: np.ndarray) -> np.ndarray:
    return images.to_uint8(images.enlarge(image, max(1, CELL_PIXELS // image.shape[0])))


def show_grid(pictures: np.ndarray, captions: list[str], columns: int = 5) -> None:
    for start in range(0, len(pictures), columns):
        slots = st.columns(columns)
        for slot, picture, text in zip(slots, pictures[start:start + columns], captions[start:start + columns]):
            slot.image(cell(picture), caption=text)
