"""Checks that a loaded task can train a classifier whose scores mean what they say.

    medtl data verify class-folders --root ~/data/my-set     # reports these as errors
    medtl benchmark my-suite.yaml                            # refuses to start a cell on them (exit 2)

An adapter turns what is on disk into an index; these checks catch indexes that load fine and
would give a result that looks valid and is not: one class only (nothing to classify), a class
with no training rows (its recall is 0 by construction), the same item listed twice (counted twice
in training and testing), class names that differ only in case (one class read as two), and (`check_task` only) byte-identical
images under two classes or on both sides of a split (`tasks.data.duplicates`).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from tasks.data.duplicates import duplicate_problems
from tasks.data.errors import DataError
from tasks.data.index import Task

SHOWN = 5  # offending items quoted; the count says how many more


def _quote(values: list) -> str:
    shown = ", ".join(map(repr, values[:SHOWN]))
    return shown + (f" (and {len(values) - SHOWN} more)" if len(values) > SHOWN else "")


def _class_rows(task: Task, rows: np.ndarray) -> np.ndarray:
    """Rows per class id among `rows` (a multilabel row counts for each of its labels)."""
    n = task.meta.num_classes
    if task.meta.kind == "multilabel":
        ids = [label for labels in task.index["labels"].to_numpy()[rows] for label in labels]
        return np.bincount(np.asarray(ids, dtype=np.int64), minlength=n)
    return np.bincount(task.index["label"].to_numpy(dtype=np.int64)[rows], minlength=n)


def task_problems(task: Task) -> list[tuple[str, str]]:
    """(problem, fix) for every reason `task` cannot give a trustworthy benchmark; empty when it can."""
    meta, index = task.meta, task.index
    problems: list[tuple[str, str]] = []
    if meta.num_classes < 2:
        problems.append((f"{meta.num_classes} class ({_quote(list(meta.class_names))}); a classifier needs at least 2",
                         "add the other class(es), or check that --data-root / --root is the dataset's top folder, "
                         "not one class folder"))
    folded: dict[str, list[str]] = defaultdict(list)
    for name in meta.class_names:
        folded[name.casefold()].append(name)
    clashes = [" / ".join(names) for names in folded.values() if len(names) > 1]
    if clashes:
        problems.append((f"class names that differ only in case: {', '.join(clashes)}; they would be trained as "
                         "different classes", "rename the folders or labels to one spelling"))
    duplicated = index["item"][index["item"].duplicated()].astype(str).unique().tolist()
    if duplicated:
        problems.append((f"{len(duplicated)} item(s) listed more than once: {_quote(duplicated)}; each copy would be "
                         "counted again in training and testing", "list every image once (delete the repeated rows)"))
    official = index["split"] != ""
    train = np.flatnonzero((index["split"] == "train").to_numpy()) if official.any() else np.arange(len(index))
    where = "official training split" if official.any() else "dataset"
    counts = _class_rows(task, train)
    absent = [name for name, count in zip(meta.class_names, counts) if count == 0]
    if absent and meta.num_classes >= 2:
        problems.append((f"class(es) {_quote(absent)} have no image in the {where}; their scores would be 0 by "
                         "construction", "add their images (to the training split), or drop the class from the "
                         "class list"))
    return problems


def check_task(task: Task, *, where: str = "") -> Task:
    """`task` unchanged when usable, else DataError naming the dataset (and `where`: a suite key) and the fix.

    Beyond `task_problems`, refuses byte-identical images across classes or split sides unless the dataset
    option `allow_duplicates` is set (`tasks.data.duplicates`; `data verify` only warns about them).
    """
    problems = task_problems(task) + duplicate_problems(task)
    if problems:
        place = f" ({where})" if where else ""
        lines = "\n  ".join(f"{problem}. Fix: {fix}." for problem, fix in problems)
        raise DataError(f"{task.meta.name}{place}: the dataset cannot be benchmarked as it is:\n  {lines}")
    return task
