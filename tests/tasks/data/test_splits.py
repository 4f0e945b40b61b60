"""k-fold splits are stratified, disjoint, cover the data, and are fixed by the seed."""

import numpy as np
import pytest

from tasks.data import assign_folds, load_task, make_fold


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_stratified_disjoint_and_covering(k):
    task = load_task("gen-target", size=16)
    folds = assign_folds(task, k, seed=0)
    assert folds.min() == 0 and folds.max() == k - 1  # every row in exactly one test fold
    overall = np.bincount(task.labels) / len(task.labels)
    for fold in range(k):
        part = make_fold(task, fold=fold, k=k, seed=0)
        rows = np.concatenate([part.train, part.val, part.test])
        assert len(rows) == len(set(rows)) == len(task.index)  # disjoint and covering
        assert set(part.test) == set(np.flatnonzero(folds == fold))
        share = np.bincount(task.labels[part.test], minlength=4) / len(part.test)
        assert np.abs(share - overall).max() < 0.06  # stratified
        assert len(part.val) > 0


def test_seed_fixes_the_split():
    task = load_task("gen-target", size=16)
    assert (assign_folds(task, 3, 1) == assign_folds(task, 3, 1)).all()
    assert (assign_folds(task, 3, 1) != assign_folds(task, 3, 2)).any()


def test_fraction_subsets_through_the_datamodule_are_nested():
    from tasks.data import TaskDataModule

    task = load_task("gen-target", size=16)
    rows = {}
    for fraction in (0.25, 0.5, 1.0, 40):
        dm = TaskDataModule(task, fold=0, k=3, seed=0, size=16, mean=(0.5,) * 3, std=(0.5,) * 3, fraction=fraction)
        dm.setup()
        rows[fraction] = set(dm.fold.train)
    assert len(rows[40]) == 40
    chain = sorted(rows.values(), key=len)  # counts and fractions share one nested order
    assert all(small < large for small, large in zip(chain, chain[1:]))
    assert chain[0] == rows[0.25] and chain[-1] == rows[1.0]


def test_subset_takes_a_mask_or_positions():
    task = load_task("gen-target", size=16)
    by_mask = task.subset(task.labels == 3)
    by_rows = task.subset(np.flatnonzero(task.labels == 3))
    assert by_mask.index.equals(by_rows.index) and (by_rows.labels == 3).all()
