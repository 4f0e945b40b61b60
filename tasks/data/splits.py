"""Splits: the official split where a dataset has one, else stratified (group) k-fold with a seed.

Official k-fold splits (an `official_fold` column, e.g. HyperKvasir's) are used when the suite asks
for the same k. Rare-class policy: a class with fewer items than folds cannot be in every test fold. Its items are
dealt to folds one each (in a seeded order) and a warning names the class, instead of letting
scikit-learn fail or silently drop it. Groups (patient, video) never straddle train and test.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from tasks.data.errors import DataError
from tasks.data.index import Task

OFFICIAL_FOLD_COLUMN = "official_fold"  # set by adapters whose publisher ships k-fold splits


@dataclass(frozen=True)
class Fold:
    """Row positions into the task index for one cell's train / val / test parts."""

    train: np.ndarray  # rows the model is fitted on
    val: np.ndarray  # rows for per-epoch validation (early stopping, tuning); never tested on
    test: np.ndarray  # held-out rows the final numbers come from


def _has_groups(task: Task) -> bool:
    return task.index["group"].nunique() < len(task.index)


def stratify_key(task: Task) -> np.ndarray:
    if task.meta.kind == "multilabel":
        # Stratify multilabel sets on their rarest label: keeps rare concepts in every fold.
        counts = np.bincount([l for ls in task.index["labels"] for l in ls], minlength=task.meta.num_classes)
        return np.asarray([min(ls, key=lambda l: counts[l]) if ls else -1 for ls in task.index["labels"]])
    return task.labels


def assign_folds(task: Task, k: int, seed: int) -> np.ndarray:
    """Fold id (0..k-1) for every row; stratified, grouped when the task has groups."""
    if k < 2:
        raise DataError(f"k-fold needs k >= 2, got {k}.")
    y = stratify_key(task)
    classes, counts = np.unique(y, return_counts=True)
    rare = sorted(classes[counts < k].tolist())
    folds = np.full(len(y), -1, dtype=np.int64)
    common = np.flatnonzero(~np.isin(y, rare))
    if len(common):
        if _has_groups(task):
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            parts = splitter.split(np.zeros(len(common)), y[common], task.index["group"].to_numpy()[common])
        else:
            parts = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(common)), y[common])
        for fold, (_, test) in enumerate(parts):
            folds[common[test]] = fold
    if rare:
        names = [task.meta.class_names[c] if 0 <= c < task.meta.num_classes else str(c) for c in rare]
        warnings.warn(
            f"{task.meta.name}: classes with fewer than {k} items ({', '.join(names)}) are dealt one item "
            "(or one group) per fold and are missing from some test folds.",
            stacklevel=2,
        )
        _deal_rare(task, y, rare, folds, k, seed)
    return folds


def _deal_rare(task: Task, y: np.ndarray, rare: list, folds: np.ndarray, k: int, seed: int) -> None:
    """Give rare-class rows a fold without splitting a group.

    A rare row whose group already has a fold (from its common-class rows) follows its group;
    the remaining rare rows are dealt to folds a group at a time, in a seeded order.
    """
    rng = np.random.default_rng(seed)
    groups = task.index["group"].to_numpy()
    placed = {g: int(f) for g, f in zip(groups, folds) if f >= 0}
    for c in rare:
        rows = np.flatnonzero(y == c)
        pending = list(dict.fromkeys(groups[r] for r in rows if groups[r] not in placed))
        order = rng.permutation(len(pending))
        deal = np.resize(rng.permutation(k), len(pending))
        for i, fold in zip(order, deal):
            placed[pending[i]] = int(fold)
        folds[rows] = [placed[groups[r]] for r in rows]


def official_folds(task: Task, k: int) -> np.ndarray | None:
    """The publisher's fold ids (e.g. HyperKvasir's 2- and 5-fold CSVs) when they have `k` folds."""
    if OFFICIAL_FOLD_COLUMN not in task.index:
        return None
    folds = task.index[OFFICIAL_FOLD_COLUMN].to_numpy(dtype=np.int64)
    return folds if int(folds.max()) + 1 == k else None


def _carve_val(task: Task, rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split `rows` into (train, val), stratified; by whole groups when the task has groups."""
    if fraction <= 0 or len(rows) < 4:
        return rows, rows[:0]
    if _has_groups(task):
        groups = task.index["group"].to_numpy()[rows]
        unique = np.unique(groups)
        rng = np.random.default_rng(seed)
        val_groups = rng.permutation(unique)[: max(1, int(round(fraction * len(unique))))]
        is_val = np.isin(groups, val_groups)
        return rows[~is_val], rows[is_val]
    y = stratify_key(task)[rows]
    classes, counts = np.unique(y, return_counts=True)
    # Stratifying needs >= 2 items per class and at least one val row per class; on tiny
    # training sets (label fractions, 23-class HyperKvasir) fall back to a plain random carve.
    stratify = y if counts.min() >= 2 and round(fraction * len(rows)) >= len(classes) else None
    train, val = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


def make_fold(task: Task, *, fold: int, k: int, seed: int, val_fraction: float = 0.15) -> Fold:
    """The rows of one cell: official split when `fold` is -1 (or k == 0), else fold `fold` of k."""
    split = task.index["split"].to_numpy()
    if fold < 0 or k == 0:
        if not task.has_official_split:
            raise DataError(f"{task.meta.name} has no official split; use k-fold (fold >= 0, k >= 2).")
        test = np.flatnonzero(split == "test")
        val = np.flatnonzero(split == "val")
        train = np.flatnonzero(split == "train")
        if len(test) == 0:
            raise DataError(f"{task.meta.name}: official split has no 'test' rows.")
        if len(val) == 0:
            train, val = _carve_val(task, train, val_fraction, seed)
        return Fold(train, val, test)
    if not 0 <= fold < k:
        raise DataError(f"fold {fold} is outside 0..{k - 1}.")
    folds = official_folds(task, k)
    if folds is None:
        folds = assign_folds(task, k, seed)
    test = np.flatnonzero(folds == fold)
    train, val = _carve_val(task, np.flatnonzero(folds != fold), val_fraction, seed)
    return Fold(train, val, test)
