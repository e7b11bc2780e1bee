"""Streamed image-folder datasets on generated folders: mixed sizes and formats, damaged files, splits,
the decoding's fits, deterministic order, sharding, and training on a folder like on the in-memory set."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import CLASSES, DAMAGED, file_bytes, write_mixed_folder

from advcore.storage import data, folder_listing, image_folder, images
from advcore.training.trainer import batches_per_epoch, training_batches

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def mixed(tmp_path):
    return write_mixed_folder(tmp_path / "photos")


def test_counts_class_names_and_skipped_files_are_right(mixed):
    dataset = data.load(str(mixed), image_size=24)
    assert dataset.class_names == CLASSES and dataset.name == "photos"
    per_class = np.bincount(dataset.train.y, minlength=3) + np.bincount(dataset.test.y, minlength=3)
    assert per_class.tolist() == [10, 10, 10]
    assert all(np.bincount(dataset.test.y, minlength=3) >= 1)
    reasons = {Path(s.path).relative_to(mixed).as_posix(): s.reason for s in dataset.skipped}
    assert sorted(reasons) == sorted(DAMAGED)
    for name, words in DAMAGED.items():
        assert words in reasons[name], (name, reasons[name])
    paths = [Path(os.fsdecode(p)).name for p in (*dataset.train.paths, *dataset.test.paths)]
    assert not {"broken.jpg", "empty.png", "fake.png", "notes.txt"} & set(paths)


@pytest.mark.parametrize("fit", image_folder.FITS)
def test_batches_have_the_chosen_size_and_range(mixed, fit):
    dataset = data.load(str(mixed), image_size=24, fit=fit, splits=("train",))
    seen = 0
    for x, y in data.batches(dataset.train, 8):
        assert x.shape[1:] == (24, 24, 3) and x.dtype == tf.float32 and len(x) <= 8
        assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1
        seen += len(y)
    assert seen == len(dataset.train) and dataset.input_shape == (24, 24, 3)
    assert dataset.train.x[[2, 0]].shape == (2, 24, 24, 3)
    np.testing.assert_array_equal(dataset.train.x[2], dataset.train.x[[2, 0]][0])


def test_each_fit_places_the_image_as_it_says():
    white = file_bytes(np.ones((20, 40, 3)), "png")  # twice as wide as high
    fitted = {fit: image_folder.decode(tf.constant(white), image_folder.Decoding(24, 24, 3, fit)).numpy()
              for fit in image_folder.FITS}
    assert fitted["crop"].min() > 0.9999 and fitted["stretch"].min() > 0.9999
    assert fitted["pad"][:6].max() == 0 and fitted["pad"][-6:].max() == 0 and fitted["pad"][6:18].min() > 0.9999


def test_an_image_of_the_input_size_is_read_pixel_for_pixel():
    pixels = np.random.default_rng(1).uniform(0, 1, (24, 24, 3))
    exact = images.to_uint8(pixels).astype(np.float32) / 255
    decoded = image_folder.decode(tf.constant(file_bytes(pixels, "png")), image_folder.Decoding(24, 24, 3)).numpy()
    np.testing.assert_array_equal(decoded, exact)


def test_grayscale_folders_read_as_one_channel_and_colour_ones_as_three(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            images.write_png(tmp_path / name / f"{i}.png", np.full((10, 12, 1), 0.5))
    assert data.load(str(tmp_path)).input_shape == (10, 12, 1)
    images.write_png(tmp_path / "b" / "0.png", np.full((10, 12, 3), 0.5))
    assert data.load(str(tmp_path), image_size=16).input_shape == (16, 16, 3)


def test_two_epochs_with_one_seed_give_the_same_order_and_pixels(mixed):
    train = data.load(str(mixed), image_size=16, splits=("train",)).train
    steps = -(-len(train) // 4)
    first = list(training_batches(train, 4, seed=3, augment="crop_flip").take(2 * steps).as_numpy_iterator())
    again = list(training_batches(train, 4, seed=3, augment="crop_flip").take(2 * steps).as_numpy_iterator())
    resumed = list(training_batches(train, 4, seed=3, augment="crop_flip", first_epoch=1)
                   .take(steps).as_numpy_iterator())
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    for (x1, y1), (x2, y2) in zip(first[steps:], resumed):  # epoch 1 does not depend on epoch 0 having run
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    epoch = np.concatenate([y for _, y in first[:steps]])
    assert sorted(epoch) == sorted(train.y)


def test_each_replica_reads_its_share_of_every_step():
    split = data.Split(np.zeros((53, 8, 8, 1), np.float32), np.arange(53))  # labels name the samples
    whole = [y for _, y in training_batches(split, 10, seed=1).take(5).as_numpy_iterator()]
    assert batches_per_epoch(53, 10, 4) == 5  # the last 3 samples cannot feed 4 replicas: left out
    shares = {first: [y for _, y in training_batches(split, 10, seed=1, replicas=(4, first, 2)).take(10)
                      .as_numpy_iterator()] for first in (0, 2)}  # two pipelines of two replicas each
    for step in range(5):
        parts = [shares[first][2 * step + k] for first in (0, 2) for k in (0, 1)]
        assert [len(part) for part in parts] == [2, 3, 2, 3]
        assert sorted(np.concatenate(parts)) == sorted(whole[step])
    epoch = np.concatenate(whole)
    assert len(set(epoch)) == 50 == len(epoch)


def test_each_replica_of_two_logical_devices_reads_its_own_share(mixed, tmp_path):
    """Mirrored over two CPU devices: every image of an epoch is read once, by one replica."""
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        from advcore.training import distribute
        from advcore.training.trainer import batches_per_epoch, distributed_batches
        from advcore.storage import data
        distribute.split_cpu(2)
        strategy = distribute.make_strategy("mirrored")
        train = data.load({str(mixed)!r}, image_size=16, splits=("train",)).train
        numbered = type(train)(train.paths, np.arange(len(train)), train.decoding)  # labels name the files
        batches = iter(distributed_batches(strategy, numbered, 6, seed=2))
        seen = [[], []]
        for _ in range(batches_per_epoch(len(train), 6, 2)):
            x, y = next(batches)
            for replica, part in enumerate(strategy.experimental_local_results(y)):
                seen[replica] += part.numpy().tolist()
        print([len(train), sorted(seen[0]), sorted(seen[1])])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    count, *replicas = eval(out.stdout.strip().splitlines()[-1])
    assert replicas[0] and replicas[1] and not set(replicas[0]) & set(replicas[1])
    assert abs(len(replicas[0]) - len(replicas[1])) <= 1  # each step: 3 images to each replica
    assert len(set(replicas[0] + replicas[1])) == 6 * (count // 6) + (count % 6 >= 2) * (count % 6)


def test_presplit_folders_keep_their_train_val_and_test_images(tmp_path):
    rng = np.random.default_rng(0)
    for part, count in (("train", 4), ("val", 2), ("test", 3)):
        for name in ("a", "b"):
            (tmp_path / part / name).mkdir(parents=True)
            for i in range(count):
                images.write_png(tmp_path / part / name / f"{i}.png", rng.uniform(0, 1, (12, 12, 3)))
    dataset = data.load(str(tmp_path))
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (8, 4, 6)
    assert dataset.class_names == ("a", "b")
    assert all(os.fsdecode(p).startswith(str(tmp_path / "val")) for p in dataset.validation.paths)
    assert data.load(str(tmp_path), splits=("test",)).train is None


@pytest.mark.parametrize("layout, message", [
    ({"a": ["0.png", "1.png"], "b": ["notes.txt"]}, "no images in the class folder b"),
    ({"a": ["0.png", "1.png"]}, "needs at least two class sub-folders"),
    ({}, "needs at least two class sub-folders"),
    ({"a": ["0.png", "1.png"], "b": ["0.png", "1.png", "2.png", "x.png", "y.png"]}, "no readable training image"),
])
def test_an_empty_class_or_a_folder_without_images_is_a_clear_error(tmp_path, layout, message):
    for name, found in layout.items():
        (tmp_path / name).mkdir()
        for file in found:
            if file[0].isdigit():
                images.write_png(tmp_path / name / file, np.zeros((8, 8, 1)))
            else:
                (tmp_path / name / file).write_bytes(b"\x89PNG\r\n\x1a\n damaged")
    if message == "no readable training image":  # every image of b but the test ones is damaged
        listing = folder_listing.scan(tmp_path)
        kept = {os.fsdecode(p) for p in listing.splits["train"][0]}
        for path in (tmp_path / "b").iterdir():
            if str(path) in kept:
                path.write_bytes(b"")
    with pytest.raises(data.DatasetFormatError, match=message):
        data.load(str(tmp_path))


def test_the_decoding_check_runs_once_per_set_of_files(mixed, monkeypatch):
    paths = folder_listing.scan(mixed).splits["train"][0]
    checks = []
    real = image_folder._undecodable
    monkeypatch.setattr(image_folder, "_undecodable", lambda *args: checks.append(1) or real(*args))
    first = image_folder.verified(paths, 3)
    second = image_folder.verified(paths, 3)
    assert len(checks) == 1 and np.array_equal(first[0], second[0]) and first[1] == second[1]
    touched = Path(os.fsdecode(paths[0]))
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    image_folder.verified(paths, 3)
    assert len(checks) == 2  # a changed file is checked again


def write_split_folder(root: Path, split, names) -> None:
    """A split of an in-memory set as PNG files, one folder per class named so sorted order is label order."""
    for label, name in enumerate(names):
        (root / f"{label:02d}-{name.replace('/', '-')}").mkdir(parents=True)
    for index, (image, label) in enumerate(zip(split.x, split.y)):
        images.write_png(root / f"{label:02d}-{names[label].replace('/', '-')}" / f"{index:05d}.png", image)


@pytest.fixture(scope="module")
def fashion_folder(fashion, tmp_path_factory):
    """2,000 training and 300 test images of the Fashion-MNIST subset, as a folder with train/ and test/."""
    root = tmp_path_factory.mktemp("fashion-folder")
    train, test = fashion.train.take(slice(0, 2000)), fashion.test.take(slice(0, 300))
    write_split_folder(root / "train", train, fashion.class_names)
    write_split_folder(root / "test", test, fashion.class_names)
    grouped = {name: split.take(np.argsort(split.y, kind="stable")) for name, split in (("train", train),
                                                                                          ("test", test))}
    return root, grouped  # the in-memory images in the folder's order: by class, then by index


def test_a_folder_copy_evaluates_and_autoattacks_exactly_like_the_in_memory_set(fashion_folder, trained_model):
    from advcore.attacks import autoattack
    from advcore.evaluation import robustness

    root, in_memory = fashion_folder
    streamed = data.load(str(root), splits=("test",)).test
    assert streamed.x.shape == in_memory["test"].x.shape == (300, 28, 28, 1)
    np.testing.assert_array_equal(streamed.x[:], in_memory["test"].x)  # PNG round trip of 8-bit pixels
    assert robustness.accuracy(trained_model, streamed.x, streamed.y) == \
        robustness.accuracy(trained_model, in_memory["test"].x, in_memory["test"].y)
    figures = [autoattack.autoattack(trained_model, split.x[:120], split.y[:120], eps=0.05, version=["apgd-ce"])
               .robust_accuracy for split in (streamed, in_memory["test"])]
    assert figures[0] == figures[1] and 0 < figures[0] < 0.9


def test_training_on_a_folder_copy_matches_training_in_memory(fashion_folder):
    import keras

    from advcore import models
    from advcore.training.config import TrainConfig
    from advcore.training.trainer import AdversarialTrainer

    root, in_memory = fashion_folder
    streamed = data.load(str(root), splits=("train",)).train
    config = TrainConfig.from_dict({"batch_size": 100, "attack": {"method": "pgd", "steps": 3}})
    losses = []
    for split in (streamed, in_memory["train"]):
        keras.utils.set_random_seed(0)
        trainer = AdversarialTrainer(models.small_cnn(), config, steps_per_epoch=20)
        trainer.compile(optimizer=keras.optimizers.Adam(2e-3))
        history = trainer.fit(training_batches(split, 100, seed=4, augment="crop"), steps_per_epoch=20, epochs=2,
                              shuffle=False, verbose=0).history
        losses.append(history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    assert losses[0][1] < losses[0][0]


def presplit_with_damage(root: Path) -> Path:
    """train/ and test/ folders of two classes, with an empty file in test/ and a truncated one in train/."""
    rng = np.random.default_rng(1)
    for part in ("train", "test"):
        for name in ("a", "b"):
            (root / part / name).mkdir(parents=True)
            for i in range(3):
                images.write_png(root / part / name / f"{i}.png", rng.uniform(0, 1, (12, 12, 3)))
    (root / "test" / "b" / "empty.png").write_bytes(b"")
    (root / "train" / "a" / "cut.png").write_bytes((root / "train" / "a" / "0.png").read_bytes()[:40])
    return root


def test_every_splits_damaged_files_are_named_with_their_split(tmp_path):
    """Finding 5 of issue 30: an empty file of the test split was never named."""
    folder = presplit_with_damage(tmp_path / "photos")
    found = {(file.split, Path(file.path).relative_to(folder).as_posix()) for file in data.folder_skipped(folder)}
    assert found == {("test", "test/b/empty.png"), ("train", "train/a/cut.png")}
    loaded = data.load(str(folder), splits=("test",))
    assert [(file.split, Path(file.path).name) for file in loaded.skipped] == [("test", "empty.png")]


def test_a_folders_split_is_the_folders_whatever_seed_a_run_trains_with(mixed):
    """Evaluations read a folder with seed 0: a run trained with another seed must not find its
    training images in their test split."""
    tests = [sorted(map(os.fsdecode, data.load(str(mixed), seed=seed, image_size=16).test.paths)) for seed in (0, 7)]
    assert tests[0] == tests[1]
