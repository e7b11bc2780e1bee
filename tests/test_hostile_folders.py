"""Image folders with files whose headers lie about their size: nothing is decoded at the size a header
announces past the pixel limit, and a huge first image does not become every input's size. The preview
through the Train page (AppTest), the training data through `data.load`, a subprocess for memory."""

import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from helpers import CLASSES, file_bytes
from test_pages import ROOT, _set, page

from advcore.storage import folder_listing


def claimed_png(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB pixels and holds a few bytes of them (about 60 bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def bomb_folder(root: Path, width=9000, height=9000, per_class=4) -> Path:
    """Two classes whose first file (0000.png) claims width x height pixels, then 28 x 28 grayscale images."""
    rng = np.random.default_rng(0)
    for name in CLASSES[:2]:
        (root / name).mkdir(parents=True)
        (root / name / "0000.png").write_bytes(claimed_png(width, height))
        for i in range(1, per_class + 1):
            (root / name / f"{i:04d}.png").write_bytes(file_bytes(rng.uniform(0, 1, (28, 28, 1)), "png"))
    return root


def test_the_header_decides_before_any_decoding(tmp_path):
    folder = bomb_folder(tmp_path / "f")
    assert len(claimed_png(9000, 9000)) < 200
    first = str(folder / CLASSES[0] / "0000.png")
    assert folder_listing.size_problem(first) == ("its header announces 9000 x 9000 pixels, over the 16,000,000 "
                                                  "AdvLab decodes")
    assert folder_listing.size_problem(str(folder / CLASSES[0] / "0001.png")) == ""
    assert folder_listing.default_input_shape(folder_listing.scan(folder)) == (28, 28, 1)


def test_a_large_first_image_gives_a_capped_default_size(tmp_path):
    from PIL import Image

    for name in CLASSES[:2]:
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (1200, 900)).save(tmp_path / name / f"{i}.png")
    assert folder_listing.default_input_shape(folder_listing.scan(tmp_path)) == (192, 256, 3)


def test_training_data_skips_the_bomb_with_its_reason_and_reads_the_rest(tmp_path, monkeypatch):
    from advcore.storage import data

    folder = bomb_folder(tmp_path / "f")
    monkeypatch.setenv("ADVLAB_CACHE_DIR", str(tmp_path / "cache"))
    dataset = data.load(str(folder))
    bombs = [s for s in dataset.skipped if s.path.endswith("0000.png")]
    assert len(bombs) == 2 and all("9000 x 9000 pixels" in s.reason for s in bombs)
    assert dataset.input_shape == (28, 28, 1)
    assert np.asarray(dataset.train.x).shape[1:] == (28, 28, 1)


def test_the_train_pages_preview_of_a_bomb_folder_stays_small(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "0")
    folder = bomb_folder(tmp_path / "f")
    app = page("train")
    _set(app, "dataset", "image folder")
    [w for w in app.main.get("text_input") if w.key == "train_form.folder"][0].set_value(str(folder)).run()
    assert not app.exception
    assert any("28 x 28 px, crop" in caption.value for caption in app.caption)
    assert len(app.main.get("image")) == 2


def test_the_preview_of_a_bomb_folder_grows_a_process_by_little(tmp_path):
    """The 185-byte file grew the server by 7.5 GB; the preview's reads now stay within a few hundred MB
    of a process that has imported TensorFlow."""
    folder = bomb_folder(tmp_path / "f", per_class=8)
    script = (f"import resource, numpy as np\n"
              f"from advcore.storage import image_folder\n"
              f"before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              f"from app.train import folder_preview\n"
              f"pictures, captions = folder_preview.samples({str(folder)!r}, 0, 'crop')\n"
              f"grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
              f"print(pictures.shape, grown // 1024)\n")
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30,) * 2))
    assert result.returncode == 0, result.stderr[-2000:]
    shape, grown_mb = result.stdout.strip().rsplit(" ", 1)
    assert shape == "(2, 28, 28, 1)" and int(grown_mb) < 400, result.stdout
