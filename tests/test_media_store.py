"""The dashboard's media store under Streamlit's own media manager: a download the manager deletes
stays servable within the time and memory bounds; other media go at once, as in Streamlit."""

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.media_file_storage import MediaFileStorageError

from app.media_store import LingeringDownloads


def manager_over(store: LingeringDownloads) -> MediaFileManager:
    return MediaFileManager(storage=store)


def cut_short_runs(manager: MediaFileManager, runs: int) -> None:
    """What each script run stopped for a rerun before it redrew anything does to the files."""
    for _ in range(runs):
        manager.clear_session_refs("session")
        manager.remove_orphaned_files()


def add(manager: MediaFileManager, data: bytes, download: bool = True, coordinates: str = "1.0") -> str:
    url = manager.add(data, "text/csv", coordinates, file_name="h.csv", is_for_static_download=download)
    return url.rsplit("/", 1)[1]


@pytest.fixture(autouse=True)
def one_session(monkeypatch):
    monkeypatch.setattr("streamlit.runtime.media_file_manager._get_session_id", lambda: "session")


def test_a_download_deleted_by_two_cut_short_runs_is_still_served():
    store = LingeringDownloads("/media")
    manager = manager_over(store)
    name = add(manager, b"run,epoch\na,1\n")
    cut_short_runs(manager, 2)
    assert not any(store.get_stats().values())  # Streamlit did delete it
    assert store.get_file(name).content == b"run,epoch\na,1\n"


def test_without_it_streamlit_store_loses_the_file():
    """The oracle for the test above: Streamlit's own store, same steps."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    store = MemoryMediaFileStorage("/media")
    manager = manager_over(store)
    name = add(manager, b"run,epoch\na,1\n")
    cut_short_runs(manager, 2)
    with pytest.raises(MediaFileStorageError):
        store.get_file(name)


def test_other_media_are_not_kept():
    store = LingeringDownloads("/media")
    manager = manager_over(store)
    name = add(manager, b"\x89PNG", download=False)
    cut_short_runs(manager, 1)
    with pytest.raises(MediaFileStorageError):
        store.get_file(name)


def test_a_kept_download_goes_after_its_time():
    store = LingeringDownloads("/media", linger_seconds=0.0)
    manager = manager_over(store)
    name = add(manager, b"a")
    cut_short_runs(manager, 2)
    add(manager, b"b", coordinates="1.1")
    cut_short_runs(manager, 2)  # deleting the next one forgets the first: past its time
    with pytest.raises(MediaFileStorageError):
        store.get_file(name)


def test_the_oldest_kept_downloads_go_first_beyond_the_memory_bound():
    store = LingeringDownloads("/media", linger_bytes=10)
    manager = manager_over(store)
    names = []
    for i in range(4):  # deleted one after another
        names.append(add(manager, bytes([i]) * 4))
        cut_short_runs(manager, 2)
    kept = []
    for name in names:
        try:
            kept.append(store.get_file(name).content)
        except MediaFileStorageError:
            pass
    assert kept == [bytes([2]) * 4, bytes([3]) * 4]  # 8 of the 10 bytes: the two newest


def test_a_download_added_again_lives_on_as_streamlit_holds_it():
    store = LingeringDownloads("/media", linger_seconds=0.0)
    manager = manager_over(store)
    name = add(manager, b"same")
    cut_short_runs(manager, 2)
    assert add(manager, b"same") == name
    cut_short_runs(manager, 1)  # its first reprieve: Streamlit keeps it, whatever this store forgets
    assert store.get_file(name).content == b"same"
