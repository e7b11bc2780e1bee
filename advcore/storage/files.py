"""Atomic file writes (a reader sees the old file or the new one, never half of one), JSON reads, safe names,
content digests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yields a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(handle)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, content) -> Path:
    return write_text(path, json.dumps(content, indent=2, sort_keys=False) + "\n")


class FileProblem(ValueError):
    """A JSON file that cannot be read or does not hold an object, with the reason."""


def read_json(path: str | os.PathLike, what: str = "file") -> dict:
    """A JSON file's object, or a FileProblem naming `what` it is and what is wrong."""
    try:
        content = json.loads(Path(path).read_text())
    except OSError as error:
        raise FileProblem(f"{what} {path}: cannot be read ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FileProblem(f"{what} {path}: not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise FileProblem(f"{what} {path}: must hold a JSON object")
    return content


def safe_name(text: str) -> str:
    """Text fit for a file or folder name: runs of anything but letters, digits, . and - become one -."""
    return re.sub(r"[^\w.-]+", "-", text).strip("-") or "unnamed"


def digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content, read in blocks."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()
