"""Nested label-fraction subsets of a training set, for data-efficiency curves.

    >>> subsets = nested_subsets(task, fold.train, [0.01, 0.1, 0.5, 657], seed=0)
    >>> subsets[0.1]          # sorted row positions into task.index, a subset of subsets[0.5]

A spec is either a float in (0, 1] (that fraction of `rows`, rounded, at least one) or an int >= 1
(exactly that many images, like the 657-image run of Hicks et al. 2018). `1.0` means all rows, `1`
one image. A cell's `fraction` (a float in its spec) maps to a spec with `subset_spec`: up to 1 a
share, above 1 a whole number of images (`657.0` -> 657), anything else refused.

How the subsets are made (one seeded ordering, every subset a prefix of it):
  1. Within each class the rows are shuffled (seeded).
  2. The k-th row (k = 0, 1, ...) of a class of n_c rows gets the position (k + o_c) / n_c, with one
     random offset o_c in [0, 1) per class: systematic sampling, so any prefix of the merged order
     holds each class in its proportion, within about one item.
  3. The first row of every class is moved to the front (classes in random order), so a subset of at
     least as many images as there are classes keeps every class.
  4. The subset of size n is the first n rows of this order.
Because the order does not depend on the specs asked for, a subset is the same whichever other specs
are requested with it, and smaller subsets are always inside larger ones.

Why not scikit-learn: `train_test_split(stratify=...)` draws each size independently, so its subsets
are not nested, and it refuses classes with a single item.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable

import numpy as np

from tasks.data.errors import DataError
from tasks.data.index import Task
from tasks.data.splits import stratify_key

Spec = float | int


def subset_spec(fraction: float | int) -> Spec:
    """The subset spec of a cell's `fraction`: <= 1 a share of the training rows (float), > 1 a count (int).

    `0.1` -> 0.1 (10 %), `1` / `1.0` -> 1.0 (all rows), `657` / `657.0` -> 657 (that many images);
    a non-whole number above 1 (`657.5`) or a value <= 0 is a DataError saying what is valid.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise DataError(f"fraction {fraction!r} must be a number: a share in (0, 1] or a whole number of images > 1.")
    if fraction > 1:
        if float(fraction) != int(fraction):
            raise DataError(f"fraction {fraction!r} is above 1 but not a whole number; above 1 a fraction counts "
                            f"training images (e.g. 657), below it is a share (e.g. 0.1).")
        return int(fraction)
    if fraction <= 0:
        raise DataError(f"fraction {fraction!r} is outside (0, 1]; use e.g. 0.1 for 10% or a whole number > 1 for a count.")
    return float(fraction)


def subset_size(spec: Spec, n_rows: int) -> int:
    """Number of rows a spec asks for out of `n_rows` (DataError for a spec outside its range)."""
    if isinstance(spec, bool) or not isinstance(spec, numbers.Real):
        raise DataError(f"subset spec {spec!r} must be a fraction in (0, 1] or a whole number of images >= 1.")
    if not isinstance(spec, numbers.Integral) and spec > 1 and float(spec) == int(spec):
        spec = int(spec)  # 657.0, as a float-typed setting holds 657: a count
    if isinstance(spec, numbers.Integral):
        if not 1 <= spec <= n_rows:
            raise DataError(
                f"subset of {spec} images asked for, but the training rows hold {n_rows}; use a count in "
                f"1..{n_rows} or a fraction."
            )
        return int(spec)
    if not 0.0 < spec <= 1.0:
        raise DataError(f"fraction {spec!r} is outside (0, 1]; use e.g. 0.1 for 10% or an int for a count.")
    return max(1, int(round(spec * n_rows)))


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """Positions 0..len(labels)-1 in the order that subsets take them (see the module docstring)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    position = np.empty(len(labels), dtype=np.float64)
    first = []
    classes = np.unique(labels)
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        position[members] = (np.arange(len(members)) + rng.random()) / len(members)
        first.append(members[0])
    # Class representatives sort before everything else (positions are >= 0), in random class order.
    position[np.asarray(first)] = -1.0 - rng.permutation(len(first)) / max(1, len(first))
    tie_break = rng.random(len(labels))  # equal positions across classes: random, not by class id
    return np.lexsort((tie_break, position))


def nested_subsets(task_or_labels, rows, specs: Iterable[Spec], seed: int) -> dict[Spec, np.ndarray]:
    """Nested, stratified, seeded subsets of `rows`, one per spec: {spec: sorted row positions}.

    `task_or_labels` is a Task (its labels; a multilabel task's rarest label per row, as in the
    splits) or an array of labels over the whole index. `rows` are positions into that index (e.g.
    `fold.train`); None means all rows.
    """
    labels = stratify_key(task_or_labels) if isinstance(task_or_labels, Task) else np.asarray(task_or_labels)
    rows = np.arange(len(labels)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise DataError("nested_subsets: no rows to subsample.")
    order = rows[stratified_order(labels[rows], seed)]
    n_classes = len(np.unique(labels[rows]))
    subsets = {}
    for spec in specs:
        n = subset_size(spec, len(rows))
        if n < n_classes:
            warnings.warn(
                f"subset {spec!r} has {n} images for {n_classes} classes; {n_classes - n} classes are left out.",
                stacklevel=2,
            )
        subsets[spec] = np.sort(order[:n])
    return subsets
