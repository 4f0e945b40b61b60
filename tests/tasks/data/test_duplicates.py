"""One image behind two paths or under two classes: normalised, or refused before a benchmark with the opt-out.

    .venv/bin/python -m pytest tests/tasks/data/test_duplicates.py -q -p no:cacheprovider
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.data import DataError, list_datasets, load_task, option_defaults
from tasks.data.checks import check_task
from tasks.data.duplicates import harmful_copies
from tasks.data.index import item_path, make_index
from tasks.data.registry import check_options
from tasks.data.verify import verify

FIXTURES = Path(os.environ.get("MEDTL_FIXTURES", Path(__file__).resolve().parents[3].parent / "shared" / "data"))


def _png(path: Path, seed: int) -> Path:
    """An 8x8 noise PNG; a different seed gives different bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


def _folders(root: Path, layout: dict[str, int]) -> Path:
    for n, (folder, count) in enumerate(layout.items()):
        for i in range(count):
            _png(root / folder / f"{i}.png", seed=100 * n + i)
    return root


def _csv(root: Path, rows: list[tuple[str, ...]], header=("path", "label")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return root


def _assert_refused(task, *fragments):
    with pytest.raises(DataError) as err:
        check_task(task, where="target")
    message = str(err.value)
    for fragment in (task.meta.name, "target", "byte-identical", "Fix: delete the copies", "allow_duplicates: true",
                     *fragments):
        assert fragment in message, (fragment, message)
    return message


# --- paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["./img/x.png", "img//x.png", "img/./x.png", "other/../img/x.png"])
def test_one_path_spelt_two_ways_is_one_item(spelling):
    assert item_path(spelling) == "img/x.png"
    assert make_index(["img/x.png", spelling], [0, 1])["item"].tolist() == ["img/x.png", "img/x.png"]
    assert make_index(range(3), [0, 1, 0])["item"].tolist() == [0, 1, 2]  # array positions stay as they are


@pytest.mark.parametrize("spelling", ["./img/x.png", "img//x.png"])
def test_csv_listing_one_image_under_two_spellings_names_both_rows(tmp_path, spelling):
    _png(tmp_path / "img" / "x.png", 0)
    _png(tmp_path / "img" / "y.png", 1)
    root = _csv(tmp_path, [("img/x.png", "a"), ("img/y.png", "b"), (spelling, "b")])
    with pytest.raises(DataError) as err:
        load_task("csv", root)
    message = str(err.value)
    assert str(root / "labels.csv") in message  # the place
    assert f"line 4: {spelling} (the image of line 2: img/x.png)" in message  # both rows
    assert "repeat a path" in message and "Fix: list each image once" in message


# --- byte-identical files -------------------------------------------------------------------------


def test_a_copy_in_another_class_folder_is_refused_naming_both_files(tmp_path):
    root = _folders(tmp_path / "set", {"benign": 3, "malignant": 3})
    shutil.copy(root / "benign" / "1.png", root / "malignant" / "copy.png")
    task = load_task("class-folders", root)
    message = _assert_refused(task, "'benign/1.png' (class benign)", "'malignant/copy.png' (class malignant)",
                              "different classes")
    assert "1 set(s)" in message


def test_a_symlinked_class_folder_is_refused(tmp_path):
    root = _folders(tmp_path / "set", {"a": 7, "c": 2})
    (root / "b").symlink_to(root / "a", target_is_directory=True)
    task = load_task("class-folders", root)
    assert len(task.index) == 16  # the link is read as a third class holding a's files
    message = _assert_refused(task, "'a/0.png' (class a) = 'b/0.png' (class b)", "different classes",
                              "7 set(s)", "(and 2 more)")
    assert "'c/" not in message


def test_a_copy_in_one_class_is_refused_because_kfold_can_test_one_and_train_the_other(tmp_path):
    root = _folders(tmp_path / "set", {"a": 3, "b": 3})
    shutil.copy(root / "a" / "0.png", root / "a" / "0 copy.png")
    _assert_refused(load_task("class-folders", root), "'a/0 copy.png' (class a) = 'a/0.png' (class a)",
                    "different groups, which k-fold can put on both sides of train/test")


def test_a_copy_across_official_splits_is_refused(tmp_path):
    root = _folders(tmp_path / "set", {"train/a": 3, "train/b": 3, "test/a": 2, "test/b": 2})
    shutil.copy(root / "train" / "b" / "2.png", root / "test" / "b" / "leak.png")
    _assert_refused(load_task("class-folders", root), "'test/b/leak.png' (class b, test)",
                    "'train/b/2.png' (class b, train)", "splits test/train")


def test_identical_frames_of_one_video_in_one_class_pass(tmp_path):
    for name in ("f0.png", "f1.png"):
        shutil.copy(_png(tmp_path / "blank.png", 7), tmp_path / name)  # two static frames, same bytes
    _png(tmp_path / "f2.png", 8)
    _png(tmp_path / "f3.png", 9)
    root = _csv(tmp_path, [("f0.png", "idle", "v1"), ("f1.png", "idle", "v1"), ("f2.png", "cut", "v2"),
                           ("f3.png", "idle", "v3")], header=("path", "label", "group"))
    task = load_task("csv", root)
    assert harmful_copies(task) == []
    assert check_task(task) is task


def test_allow_duplicates_lets_the_copies_through_and_the_task_carries_it(tmp_path):
    root = _folders(tmp_path / "set", {"benign": 3, "malignant": 3})
    shutil.copy(root / "benign" / "1.png", root / "malignant" / "copy.png")
    assert load_task("class-folders", root).meta.allow_duplicates is False
    for value in (True, "true", "yes"):
        task = load_task("class-folders", root, allow_duplicates=value)
        assert task.meta.allow_duplicates is True and check_task(task) is task
        assert task.subset([0, 1]).meta.allow_duplicates is True  # folds keep it
    assert load_task("class-folders", root, allow_duplicates="false").meta.allow_duplicates is False
    with pytest.raises(DataError) as err:
        load_task("class-folders", root, allow_duplicates="maybe")
    assert "allow_duplicates='maybe'" in str(err.value) and "Fix: write allow_duplicates: true" in str(err.value)


@pytest.mark.parametrize("name", list_datasets())
def test_every_dataset_takes_the_option_without_changing_its_defaults(name):
    check_options(name, {"allow_duplicates": True})  # a suite may set it on any dataset
    assert "allow_duplicates" not in option_defaults(name)  # cells that do not set it keep their hash


def test_verify_still_only_warns_and_points_at_the_option(tmp_path):
    root = _folders(tmp_path / "set", {"benign": 3, "malignant": 3})
    shutil.copy(root / "benign" / "1.png", root / "malignant" / "copy.png")
    report = verify("class-folders", root, progress=False)
    assert report.ok and len(report.warnings) == 1
    assert "allow_duplicates: true" in report.warnings[0].fix


@pytest.mark.fixtures
def test_breastmnist_train_test_copy_is_refused_in_milliseconds_unless_allowed():
    path = FIXTURES / "breastmnist" / "breastmnist.npz"
    if not path.is_file():
        pytest.skip(f"BreastMNIST fixture not found at {path}; set MEDTL_FIXTURES to the shared data folder")
    task = load_task("medmnist", path)
    start = time.perf_counter()
    found = harmful_copies(task)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0  # 780 arrays hashed once: ~2 ms measured
    # the source data's known quirk: train image 115 (malignant) is test image 700 (normal, benign)
    assert [rows.tolist() for rows, _ in found] == [[115, 700]]
    _assert_refused(task, "115 (class malignant, train) = 700 (class normal, benign, test)",
                    "different classes, splits test/train")
    allowed = load_task("medmnist", path, allow_duplicates=True)
    assert check_task(allowed) is allowed
