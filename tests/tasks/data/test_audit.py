"""Leakage audit: planted exact and near duplicates are found, distinct images are not, group leaks
are caught, and the real BreastMNIST quirk (one train image pixel-identical to a test image) is found.

    .venv/bin/python -m pytest tests/tasks/data/test_audit.py -q -p no:cacheprovider
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("imagehash")

from tasks.data import DataError, Task, TaskMeta, assign_folds, load_task, make_fold, make_index  # noqa: E402
from tasks.data.audit import (  # noqa: E402
    audit,
    duplicates_across_splits,
    group_leaks,
    near_duplicate_pairs,
    sides_of,
)
from tasks.data.images import ArrayStore  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(os.environ.get("MEDTL_FIXTURES", REPO.parent / "shared" / "data"))
BREASTMNIST = FIXTURES / "breastmnist" / "breastmnist.npz"


def smooth_images(n: int, seed: int, size: int = 64) -> np.ndarray:
    """n distinct natural-looking images: random 6x6 colour fields upsampled bicubically."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.BICUBIC)) for c in coarse])


def noisy_jpeg_copy(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """What a re-export does to an image: a little noise, then JPEG at quality 70."""
    noisy = np.clip(image + np.random.default_rng(seed).normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, "JPEG", quality=70)
    return np.asarray(Image.open(buffer).convert("RGB"))


def make_task(images: np.ndarray, splits, groups=None, labels=None, name="planted") -> Task:
    labels = np.arange(len(images)) % 3 if labels is None else labels
    index = make_index(range(len(images)), labels, groups=groups, splits=splits)
    return Task(TaskMeta(name, ("a", "b", "c"), "multiclass"), index, ArrayStore(images))


@pytest.fixture(scope="module")
def planted() -> Task:
    """30 train + 10 test distinct images; test 30 is an exact copy of train 5, test 31 a noisy JPEG of train 7."""
    images = smooth_images(40, seed=1)
    images[30] = images[5]
    images[31] = noisy_jpeg_copy(images[7])
    return make_task(images, ["train"] * 30 + ["test"] * 10)


def test_planted_duplicates_found_and_nothing_else(planted):
    report = audit(planted)
    assert not report.ok
    assert report.duplicates[["split_a", "split_b", "n_pairs", "n_exact"]].values.tolist() == [["test", "train", 2, 1]]
    pairs = report.pairs
    assert sorted(zip(pairs["item_a"], pairs["item_b"], pairs["exact"])) == [("30", "5", True), ("31", "7", False)]
    assert pairs.loc[pairs["item_a"] == "30", "distance"].item() == 0
    assert 0 < pairs.loc[pairs["item_a"] == "31", "distance"].item() <= report.threshold
    assert report.cross.empty and report.group_leaks.empty
    assert "near-duplicate pairs across splits: 2" in report.summary()
    assert duplicates_across_splits(planted)["n_pairs"].tolist() == [2]


def test_distinct_images_are_clean():
    task = make_task(smooth_images(60, seed=2), ["train"] * 40 + ["val"] * 10 + ["test"] * 10)
    report = audit(task)
    assert report.ok and report.pairs.empty and report.duplicates.empty


def test_exact_only_threshold_misses_the_noisy_copy(planted):
    report = audit(planted, threshold=0)
    assert report.pairs[["item_a", "item_b"]].values.tolist() == [["30", "5"]]


def test_source_task_duplicates_reported_as_cross(planted):
    target = planted.subset(~np.isin(np.arange(40), [30, 31]))  # without the planted pairs: no duplicates inside
    source_images = smooth_images(20, seed=3)
    source_images[4] = noisy_jpeg_copy(planted.images.array[35], seed=1)  # a target test image, re-exported
    source_images[9] = planted.images.array[12]  # a target train image
    source = make_task(source_images, [""] * 20, name="src")
    report = audit(target, other=source)
    assert report.duplicates.empty
    cross = report.cross[["split_a", "split_b", "n_pairs", "n_exact"]].values.tolist()
    assert cross == [["other:src", "test", 1, 0], ["other:src", "train", 1, 1]]
    assert report.cross["examples"][0][0][:2] == ("other:src/4", "35")  # items keep their store position
    assert not report.ok


def test_fold_ids_and_fold_objects_as_assignment(planted):
    folds = assign_folds(planted, 4, seed=0)
    report = audit(planted, folds)
    assert report.duplicates["n_pairs"].sum() == 2 - sum(folds[[5, 7]] == folds[[30, 31]])
    fold = make_fold(planted, fold=0, k=4, seed=0)
    sides = sides_of(planted, fold)
    assert set(sides[fold.train]) == {"train"} and set(sides[fold.test]) == {"test"}
    with pytest.raises(DataError, match="has no official split"):
        audit(make_task(smooth_images(6, seed=4), [""] * 6))
    with pytest.raises(DataError, match="give one per row"):
        sides_of(planted, [0, 1])


def grouped_task(n_groups: int = 24, per_group: int = 5) -> Task:
    groups = np.repeat([f"video{g}" for g in range(n_groups)], per_group)
    labels = np.repeat(np.arange(n_groups) % 3, per_group)
    return make_task(smooth_images(n_groups * per_group, seed=5, size=32), [""] * len(groups), groups, labels)


def test_grouped_folds_have_no_group_leaks_random_split_does():
    task = grouped_task()
    folds = assign_folds(task, 4, seed=0)
    assert group_leaks(task, folds).empty
    report = audit(task, folds)
    assert report.ok, report.summary()
    random_sides = np.random.default_rng(0).choice(["train", "test"], len(task.index))
    leaks = group_leaks(task, random_sides)
    assert len(leaks) > 0 and (leaks["n_items"] == 5).all()
    assert all(sides == ("test", "train") for sides in leaks["sides"])
    assert not audit(task, random_sides).ok


def test_unassigned_rows_are_ignored():
    task = grouped_task(4, 2)
    sides = np.array(["train", "", "test", "-1", "train", "train", "test", "test"])
    leaks = group_leaks(task, sides)  # video0 = rows 0, 1: row 1 is on no side
    assert leaks["group"].tolist() == []
    assert group_leaks(task, ["train", "test"] + ["train"] * 6)["group"].tolist() == ["video0"]


def test_multi_index_search_equals_brute_force():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 1500, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, 300).astype(np.uint64)
    hashes[1000:1300] = hashes[:300] ^ flips  # one-bit neighbours
    hashes[1300:1400] = hashes[300:400] ^ np.uint64(0b1011)  # three-bit neighbours
    sides = rng.choice(["train", "val", "test"], len(hashes))
    xor = hashes[:, None] ^ hashes[None, :]
    distance = np.unpackbits(xor[..., None].view(np.uint8), axis=-1).sum(-1)
    upper = np.triu(np.ones_like(distance, dtype=bool), 1) & (sides[:, None] != sides[None, :])
    for threshold in (0, 1, 3, 6):
        expected = set(zip(*np.nonzero(upper & (distance <= threshold))))
        pairs = near_duplicate_pairs(hashes, sides, threshold)
        assert set(zip(pairs["a"], pairs["b"])) == expected
        assert (pairs["distance"].to_numpy() == distance[pairs["a"], pairs["b"]]).all()


@pytest.mark.skipif(not BREASTMNIST.is_file(), reason=f"BreastMNIST fixture not found at {BREASTMNIST}")
def test_breastmnist_has_exactly_one_pixel_identical_train_test_pair():
    task = load_task("medmnist", BREASTMNIST)
    report = audit(task)
    exact = report.pairs[report.pairs["exact"]]
    assert len(exact) == 1
    row = exact.iloc[0]
    assert (row["split_a"], row["split_b"], row["distance"]) == ("test", "train", 0)
    a, b = int(row["item_a"]), int(row["item_b"])
    np.testing.assert_array_equal(task.images.array[a], task.images.array[b])
    # Independent check: hash the raw pixels of every image; exactly one train/test value is shared.
    arrays = task.images.array.reshape(len(task.index), -1)
    splits = task.index["split"].to_numpy()
    keys = {split: {arrays[i].tobytes() for i in np.flatnonzero(splits == split)} for split in ("train", "val", "test")}
    assert len(keys["train"] & keys["test"]) == 1 and not keys["train"] & keys["val"] and not keys["val"] & keys["test"]
    assert report.duplicates["n_exact"].sum() == 1
