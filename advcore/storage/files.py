"""Atomic file writes (a reader sees the old file or the new one, never half of one), bounded reads that never
follow a symbolic link, JSON reads, safe names, content digests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
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
    """A file that cannot be read safely, or a JSON file that does not hold an object, with the reason."""


def open_regular(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """A descriptor of a regular file opened with `flags`, never through a symbolic link (a FileProblem);
    non-blocking, so a FIFO planted in its place cannot hang the caller before it is refused."""
    try:
        handle = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError:
        if os.path.islink(path):
            raise FileProblem(f"{Path(path).name} is a symbolic link, which AdvLab never follows") from None
        raise
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise FileProblem(f"{Path(path).name} is not a regular file")
    return handle


def copy_regular(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copies a regular file, never read through a symbolic link (a FileProblem), to a new file."""
    with os.fdopen(open_regular(source, os.O_RDONLY), "rb") as reading, open(target, "xb") as writing:
        shutil.copyfileobj(reading, writing)


def open_append(path: str | os.PathLike, binary: bool = False):
    """A log opened for appending (created if missing), line-buffered as text: never through a symbolic
    link, never anything but a regular file, so a link planted in a shared folder cannot make AdvLab
    write into a file outside it."""
    handle = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(handle, "ab" if binary else "a", buffering=0 if binary else 1)


def read_bounded(path: str | os.PathLike, limit: int, *, tail: bool = False) -> bytes:
    """A regular file's bytes, never through a symbolic link and never more than `limit` of them: a larger
    file is a FileProblem, or with `tail` its last `limit` bytes. Files of a shared folder may be links to
    anything (/etc/shadow), FIFOs that block a reader for ever, or gigabytes: all are refused before a read."""
    handle = open_regular(path, os.O_RDONLY)
    try:
        info = os.fstat(handle)
        if info.st_size > limit and not tail:
            raise FileProblem(f"{Path(path).name} holds {info.st_size:,} bytes, over the {limit:,} expected at most")
        if info.st_size > limit:
            os.lseek(handle, info.st_size - limit, os.SEEK_SET)
        chunks, left = [], limit
        while left and (chunk := os.read(handle, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(handle)


MAX_JSON_BYTES = 64 * 2**20  # AdvLab's largest JSON (an evaluation's results) takes a few megabytes


def read_json(path: str | os.PathLike, what: str = "file", limit: int = MAX_JSON_BYTES) -> dict:
    """A JSON file's object (read by `read_bounded`), or a FileProblem naming `what` it is and what is wrong."""
    try:
        content = json.loads(read_bounded(path, limit))
    except FileProblem as problem:
        raise FileProblem(f"{what} {path}: {problem}") from None
    except OSError as error:
        raise FileProblem(f"{what} {path}: cannot be read ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
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
