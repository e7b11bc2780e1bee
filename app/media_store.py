"""The dashboard server's media store: Streamlit's in-memory one, except that a download file it
deletes stays servable for a while.

Why: each script run first drops the session's references to its files and, when it ends, deletes
the files no run references; a download file is spared once. Two runs cut short by reruns in a row
(a slider stepped with the arrow keys, a multiselect changed quickly) so delete the file behind a
download button the page still shows, and a click on it before the next run redraws the button
gets a 404: the browser's download fails ("Failed - No file"; Chromium's DevTools call it
canceled). A deleted download therefore lingers, within a time and a memory bound.
"""

from __future__ import annotations

import collections
import os
import threading
import time

from streamlit.runtime.media_file_storage import MediaFileKind, MediaFileStorageError
from streamlit.runtime.memory_media_file_storage import MemoryFile, MemoryMediaFileStorage

LINGER_SECONDS = 600.0
LINGER_BYTES = 256 * 2**20


class LingeringDownloads(MemoryMediaFileStorage):
    def __init__(self, media_endpoint: str, linger_seconds: float = LINGER_SECONDS,
                 linger_bytes: int = LINGER_BYTES) -> None:
        super().__init__(media_endpoint)
        self._linger_seconds = linger_seconds
        self._linger_bytes = linger_bytes
        self._deleted: collections.OrderedDict[str, tuple[float, MemoryFile]] = collections.OrderedDict()
        self._lock = threading.Lock()  # Streamlit deletes under its manager's lock; the /media route reads without

    def load_and_get_id(self, path_or_data: str | bytes, mimetype: str, kind: MediaFileKind,
                        filename: str | None = None) -> str:
        file_id = super().load_and_get_id(path_or_data, mimetype, kind, filename)
        with self._lock:
            self._deleted.pop(file_id, None)  # live again: held once
        return file_id

    def delete_file(self, file_id: str) -> None:
        try:
            file = super().get_file(file_id)
        except MediaFileStorageError:
            return
        super().delete_file(file_id)
        if file.kind == MediaFileKind.DOWNLOADABLE:
            with self._lock:
                self._deleted[file_id] = (time.monotonic(), file)
                self._forget_old()

    def get_file(self, filename: str) -> MemoryFile:
        try:
            return super().get_file(filename)
        except MediaFileStorageError:
            with self._lock:
                self._forget_old()
                kept = self._deleted.get(os.path.splitext(filename)[0])
            if kept is None:
                raise
            return kept[1]

    def _forget_old(self) -> None:
        """Drop deleted files past their time, then the oldest until the rest fit the memory bound."""
        now = time.monotonic()
        held = sum(file.content_size for _, file in self._deleted.values())
        while self._deleted:
            deleted_at, oldest = next(iter(self._deleted.values()))
            if now - deleted_at <= self._linger_seconds and held <= self._linger_bytes:
                break
            self._deleted.popitem(last=False)
            held -= oldest.content_size
