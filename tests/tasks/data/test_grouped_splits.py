"""Grouped k-fold splits (`assign_folds` / `make_fold` on a task with groups such as patients or videos):
no group on both sides, every row in exactly one test fold, classes stratified, rare classes handled.

    .venv/bin/python -m pytest tests/tasks/data/test_grouped_splits.py -q -p no:cacheprovider
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from tasks.data import Task, TaskMeta, assign_folds, make_fold, make_index
from tasks.data.images import ArrayStore

CLASSES = ("normal", "benign", "malignant")


def grouped_task(seed: int = 0, n_groups: int = 80) -> Task:
    """Patients with 1-6 images each; labels mostly follow the patient (as in real data), classes imbalanced."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, n_groups)
    patient_class = rng.choice(3, n_groups, p=[0.5, 0.3, 0.2])
    groups = np.repeat([f"patient{g:03d}" for g in range(n_groups)], sizes)
    labels = np.repeat(patient_class, sizes)
    flip = rng.random(len(labels)) < 0.1  # some patients have images of another class too
    labels[flip] = rng.choice(3, flip.sum())
    index = make_index(range(len(labels)), labels, groups=groups)
    return Task(TaskMeta("grouped", CLASSES, "multiclass"), index, ArrayStore(np.zeros((len(labels), 2, 2), np.uint8)))


def folds_per_group(task: Task, folds: np.ndarray) -> pd.Series:
    return pd.DataFrame({"group": task.index["group"], "fold": folds}).groupby("group")["fold"].nunique()


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_assign_folds_keeps_groups_whole_and_stratifies(k):
    task = grouped_task()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no class is rare here, so no warning may appear
        folds = assign_folds(task, k, seed=0)
    assert folds.shape == (len(task.index),) and folds.min() == 0 and folds.max() == k - 1
    assert (folds_per_group(task, folds) == 1).all()
    overall = np.bincount(task.labels, minlength=3) / len(task.labels)
    sizes = np.bincount(folds, minlength=k)
    assert sizes.min() > 0.5 * len(task.index) / k  # no fold starved by the grouping
    for fold in range(k):
        share = np.bincount(task.labels[folds == fold], minlength=3) / (folds == fold).sum()
        assert np.abs(share - overall).max() < 0.15, (fold, share, overall)


@pytest.mark.parametrize("k", [3, 5])
def test_make_fold_parts_are_disjoint_and_cover_every_row_once(k):
    task = grouped_task(seed=1)
    groups = task.index["group"].to_numpy()
    tested = np.zeros(len(task.index), dtype=int)
    for fold in range(k):
        part = make_fold(task, fold=fold, k=k, seed=3, val_fraction=0.2)
        tested[part.test] += 1
        all_rows = np.concatenate([part.train, part.val, part.test])
        assert np.array_equal(np.sort(all_rows), np.arange(len(task.index)))  # disjoint and complete
        assert len(part.val) > 0
        train, val, test = (set(groups[rows]) for rows in (part.train, part.val, part.test))
        assert not train & test and not val & test and not train & val
    assert (tested == 1).all()  # every row in exactly one test fold


def test_seeded():
    task = grouped_task(seed=2)
    np.testing.assert_array_equal(assign_folds(task, 5, seed=4), assign_folds(task, 5, seed=4))
    assert not np.array_equal(assign_folds(task, 5, seed=4), assign_folds(task, 5, seed=5))


def rare_class_task() -> Task:
    """A class ('rare') with 2 images, in two patients of its own, fewer than the 5 folds."""
    task = grouped_task(seed=3)
    index = task.index.copy()
    extra = make_index([len(index), len(index) + 1], [3, 3], groups=["rare-patient-a", "rare-patient-b"])
    index = pd.concat([index, extra], ignore_index=True)
    store = ArrayStore(np.zeros((len(index), 2, 2), np.uint8))
    return Task(TaskMeta("rare", CLASSES + ("rare",), "multiclass"), index, store)


def test_rare_class_is_dealt_one_per_fold_with_a_warning():
    task = rare_class_task()
    with pytest.warns(UserWarning, match=r"fewer than 5 items \(rare\)"):
        folds = assign_folds(task, 5, seed=0)
    assert (folds >= 0).all()  # nothing dropped
    rare_folds = folds[task.labels == 3]
    assert len(set(rare_folds)) == 2  # the two rare images are in two different test folds
    assert (folds_per_group(task, folds) == 1).all()
    with pytest.warns(UserWarning):
        part = make_fold(task, fold=int(rare_folds[0]), k=5, seed=0)
    assert 3 in task.labels[part.test] and 3 in task.labels[np.concatenate([part.train, part.val])]


def test_rare_class_rows_stay_with_their_group():
    task = grouped_task(seed=4)
    index = task.index.copy()
    first_two = index["group"].unique()[:2]
    rows = np.flatnonzero(index["group"].isin(first_two).to_numpy())
    index.loc[rows[:3], "label"] = 3  # three rare images inside patients that also have common images
    task = Task(TaskMeta("rare-in-group", CLASSES + ("rare",), "multiclass"), index, task.images)
    with pytest.warns(UserWarning):
        folds = assign_folds(task, 5, seed=0)
    assert (folds_per_group(task, folds) == 1).all()
