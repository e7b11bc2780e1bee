"""The GANs the pages can use: bundled generators and GAN runs with a saved generator.

Listing reads config files only; TensorFlow is imported when a GAN is first loaded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import streamlit as st

from advcore.storage.runs import Run, RunError, list_runs
from advcore.training.config import GENERATOR_FILE, config_kind

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DIR = PROJECT_ROOT / "assets" / "generators"  # each folder a finished GAN run


@dataclasses.dataclass(frozen=True)
class GeneratorEntry:
    label: str
    folder: Path
    dataset: str


def _dataset(config: dict) -> str:
    return config.get("data", {}).get("dataset") or "unknown"


def list_generators(root: Path | None = None) -> list[GeneratorEntry]:
    """Bundled generators first, then GAN runs (newest first) that have saved a generator."""
    bundled = [(Run(BUNDLED_DIR, folder.name), True) for folder in sorted(BUNDLED_DIR.glob("*"))]
    entries = []
    for run, is_bundled in bundled + [(run, False) for run in list_runs(root)]:
        generator = run.path / GENERATOR_FILE
        if generator.is_symlink() or not generator.is_file():  # never a link out of the runs folder
            continue
        try:
            config = run.training_config()
            if config_kind(config) != "gan":
                continue
            label = (f"{run.id} (bundled)" if is_bundled else
                     f"{run.name()} (GAN run {run.id[-4:]}, {run.status()['status']})")
        except RunError:
            continue
        entries.append(GeneratorEntry(label, run.path, _dataset(config)))
    return entries


@st.cache_resource(max_entries=4, show_spinner="Loading the GAN...")
def _load(folder: str, modified: float):
    from advcore.generative import acgan  # TensorFlow: only once a GAN is really needed

    return acgan.load(folder)


def load(entry: GeneratorEntry):
    """The entry's ConditionalGan, loaded once per saved version (a running GAN run saves a new one
    each epoch)."""
    return _load(str(entry.folder), (entry.folder / GENERATOR_FILE).stat().st_mtime)
