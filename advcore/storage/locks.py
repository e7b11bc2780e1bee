"""Exclusive OS file locks that name their holder: one process per run folder, one scheduler per runs root.

A lock is `flock` on a small file holding the holder's pid. The OS drops it when the holder's process
ends however it ends (even SIGKILL), so no stale lock ever outlives its process, and no pid check can
race with a new process reusing the pid. A lock file that is a symbolic link or not a regular file is
never opened (`files.FileProblem`): taking the lock truncates the file.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

from advcore.storage import files


class LockHeld(RuntimeError):
    """Another live process holds the lock; `pid` names it when it could be read."""

    def __init__(self, path: Path, pid: int | None):
        self.path, self.pid = path, pid
        super().__init__(f"{path} is held by process {pid if pid is not None else '(unknown)'}")


def _holder_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding the lock, or None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = files.open_regular(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        return None
    return handle


@contextmanager
def hold(path: str | os.PathLike, wait: float = 0.0):
    """Holds the lock at `path` for the `with` block, or raises LockHeld after trying for `wait` seconds
    (a `holder` probe holds a free lock for an instant)."""
    path = Path(path)
    deadline = time.monotonic() + wait
    while (handle := _try_lock(path)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if handle is None:
        raise LockHeld(path, _holder_pid(path))
    try:
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(handle)


def holder(path: str | os.PathLike) -> int | None:
    """The pid of the live process holding the lock at `path`, or None when nobody holds it.

    The probe takes a free lock for an instant: whoever takes it for real waits that instant out."""
    path = Path(path)
    if not path.exists():
        return None
    handle = _try_lock(path)
    if handle is None:
        return _holder_pid(path) or -1
    os.close(handle)
    return None
