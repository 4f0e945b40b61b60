"""Nested label-fraction subsets: nestedness, stratification, determinism, exact sizes.

    .venv/bin/python -m pytest tests/tasks/data/test_fractions.py -q -p no:cacheprovider
"""

from __future__ import annotations

import numpy as np
import pytest

from tasks.data import DataError, Task, TaskMeta, make_index
from tasks.data.fractions import nested_subsets, subset_size, subset_spec
from tasks.data.images import ArrayStore

SIZES = [500, 300, 150, 45, 5]  # an imbalanced 5-class training set of 1000 images
LABELS = np.repeat(np.arange(len(SIZES)), SIZES)
SPECS = [0.01, 0.05, 0.1, 0.25, 0.5, 100, 657, 1.0]


def shuffled_labels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(LABELS)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_nested_exact_sizes_and_stratified(seed):
    labels = shuffled_labels(seed)
    subsets = nested_subsets(labels, None, SPECS, seed=seed)
    assert list(subsets) == SPECS
    sizes = {spec: len(rows) for spec, rows in subsets.items()}
    assert sizes == {0.01: 10, 0.05: 50, 0.1: 100, 0.25: 250, 0.5: 500, 100: 100, 657: 657, 1.0: 1000}
    by_size = sorted(subsets.values(), key=len)
    for small, large in zip(by_size, by_size[1:]):
        assert np.isin(small, large).all()
    np.testing.assert_array_equal(subsets[0.1], subsets[100])  # same size, same order -> same subset
    np.testing.assert_array_equal(subsets[1.0], np.arange(1000))
    proportions = np.asarray(SIZES) / sum(SIZES)
    for spec, rows in subsets.items():
        counts = np.bincount(labels[rows], minlength=len(SIZES))
        assert (counts >= 1).all(), f"{spec}: a class vanished: {counts}"
        assert np.abs(counts - len(rows) * proportions).max() <= 2, f"{spec}: {counts} vs {len(rows) * proportions}"
        assert len(np.unique(rows)) == len(rows)


def test_subsets_of_given_rows_only():
    labels = shuffled_labels()
    train = np.flatnonzero(np.arange(1000) % 3 != 0)  # e.g. fold.train
    subsets = nested_subsets(labels, train, [0.2, 50], seed=0)
    assert np.isin(subsets[0.2], train).all() and np.isin(subsets[50], train).all()
    assert len(subsets[0.2]) == round(0.2 * len(train)) and len(subsets[50]) == 50
    assert np.isin(subsets[50], subsets[0.2]).all()


def test_deterministic_and_independent_of_other_specs():
    labels = shuffled_labels()
    a = nested_subsets(labels, None, [0.1, 0.5], seed=7)
    b = nested_subsets(labels, None, [0.5, 0.1, 0.3], seed=7)
    c = nested_subsets(labels, None, [0.1], seed=8)
    np.testing.assert_array_equal(a[0.1], b[0.1])
    np.testing.assert_array_equal(a[0.5], b[0.5])
    assert not np.array_equal(a[0.1], c[0.1])


def test_accepts_a_task():
    task = Task(TaskMeta("t", tuple("abcde"), "multiclass"), make_index(range(1000), shuffled_labels()),
                ArrayStore(np.zeros((1000, 2, 2), np.uint8)))
    subsets = nested_subsets(task, None, [0.1], seed=0)
    np.testing.assert_array_equal(subsets[0.1], nested_subsets(task.labels, None, [0.1], seed=0)[0.1])


def test_fewer_images_than_classes_warns():
    with pytest.warns(UserWarning, match="3 images for 5 classes"):
        subsets = nested_subsets(shuffled_labels(), None, [3], seed=0)
    assert len(np.unique(shuffled_labels()[subsets[3]])) == 3


@pytest.mark.parametrize("spec", [0.0, 1.5, -0.1, 0, 1001, True, "10%"])
def test_bad_specs(spec):
    with pytest.raises(DataError):
        subset_size(spec, 1000)


def test_numpy_scalars_are_specs():
    assert subset_size(np.int64(657), 1000) == 657 and subset_size(np.float32(0.5), 1000) == 500


# Counted fractions: a cell's `fraction` above 1 is a number of training images (Hicks et al.'s 657-image run).

@pytest.mark.parametrize("value, spec", [(0.1, 0.1), (1, 1.0), (1.0, 1.0), (657, 657), (657.0, 657), (np.float64(2.0), 2)])
def test_subset_spec_reads_a_cell_fraction(value, spec):
    got = subset_spec(value)
    assert got == spec and type(got) is type(spec)


@pytest.mark.parametrize("value", [657.5, 1.5, 0, -3, "657", True])
def test_subset_spec_refuses_what_is_neither_a_share_nor_a_count(value):
    with pytest.raises(DataError, match="fraction"):
        subset_spec(value)


@pytest.mark.parametrize("seed", [0, 5])
def test_counts_are_exact_stratified_and_nested_with_fractions(seed):
    labels = shuffled_labels(seed)
    specs = [subset_spec(v) for v in (657.0, 300.0, 0.2, 0.9)]
    subsets = nested_subsets(labels, None, specs, seed=seed)
    assert len(subsets[657]) == 657 and len(subsets[300]) == 300
    assert np.isin(subsets[300], subsets[657]).all() and np.isin(subsets[0.2], subsets[300]).all()
    assert np.isin(subsets[657], subsets[0.9]).all()
    # The same one order as the fractions (so counts nest with them): each class within 2 items of its
    # share, the bound of that order (1 for ~98 % of sizes; the worst case, over 100 seeds x every size, is 2).
    for n in (657, 300):
        counts = np.bincount(labels[subsets[n]], minlength=len(SIZES))
        assert np.abs(counts - n * np.asarray(SIZES) / sum(SIZES)).max() <= 2, counts


def test_fractions_up_to_one_are_unchanged():
    # Pinned before counted fractions existed: the first rows of seed 0's 10 % subset.
    labels = shuffled_labels(0)
    np.testing.assert_array_equal(nested_subsets(labels, None, [subset_spec(0.1)], seed=0)[0.1][:12],
                                  [2, 9, 10, 32, 47, 78, 80, 101, 102, 116, 121, 128])


def test_a_datamodule_takes_a_count_of_training_images():
    from tasks.data import load_task
    from tasks.data.datamodule import TaskDataModule

    task = load_task("gen-target", None, scale=0.5, size=16)

    def train_rows(fraction):
        data = TaskDataModule(task, fold=0, k=3, seed=0, size=16, mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=4,
                              fraction=fraction)
        data.setup()
        return data.fold.train

    everything = train_rows(1.0)
    twenty, thirty = train_rows(20.0), train_rows(30)
    assert len(twenty) == 20 and len(thirty) == 30 and np.isin(twenty, thirty).all() and np.isin(thirty, everything).all()
    counts = np.bincount(task.labels[twenty], minlength=task.meta.num_classes)
    shares = np.bincount(task.labels[everything], minlength=task.meta.num_classes) / len(everything)
    assert np.abs(counts - 20 * shares).max() <= 2
    with pytest.raises(DataError, match=rf"subset of 500 images asked for, but the training rows hold {len(everything)}"):
        train_rows(500.0)
