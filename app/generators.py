"""The GANs the pages can use: bundled generators and GAN runs with a saved generator."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import streamlit as st

from advcore import generative
from advcore.config import config_kind
from advcore.runs import Run, RunError, list_runs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DIR = PROJECT_ROOT / "assets" / "generators"  # each folder a finished GAN run


@dataclasses.dataclass(frozen=True)
class GeneratorEntry:
    label: str
    folder: Path
    dataset: str


def _dataset(folder: Path) -> str | None:
    try:
        return Run(folder.parent, folder.name).config().get("data", {}).get("dataset")
    except RunError:
        return None


def list_generators(root: Path | None = None) -> list[GeneratorEntry]:
    """Bundled generators first, then GAN runs (newest first) that have saved a generator."""
    entries = [GeneratorEntry(f"{folder.name} (bundled)", folder, _dataset(folder) or "unknown")
               for folder in sorted(BUNDLED_DIR.glob("*")) if (folder / generative.GENERATOR_FILE).is_file()]
    for run in list_runs(root):
        try:
            if config_kind(run.config()) == "gan" and (run.path / generative.GENERATOR_FILE).is_file():
                entries.append(GeneratorEntry(f"{run.name()} (GAN run {run.id[-4:]}, {run.status()['status']})",
                                              run.path, _dataset(run.path) or "unknown"))
        except RunError:
            continue
    return entries


@st.cache_resource(max_entries=4, show_spinner="Loading the GAN...")
def _load(folder: str, modified: float) -> generative.ConditionalGan:
    return generative.load(folder)


def load(entry: GeneratorEntry) -> generative.ConditionalGan:
    """The entry's GAN, loaded once per saved version (a running GAN run saves a new one each epoch)."""
    return _load(str(entry.folder), (entry.folder / generative.GENERATOR_FILE).stat().st_mtime)
