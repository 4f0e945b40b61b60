"""External test sets: another site's images scored with the target's label space, or the target's own
official test split held out of its k-fold.

    target:
      dataset: medico
      path: medico2018
      external:
        - {name: site-b, dataset: class-folders, path: site-b}   # another hospital, same class names
        - {name: official-test, split: official}                 # Hicks et al.: k-fold on the development rows

An external set is read with the target's class list: its class names must be among the target's
(a site may lack a class; a class the target does not have cannot be scored) and its labels are
renumbered by name, so `class-folders` sorting a smaller class list differently changes nothing.
With `split: official` the cells cross-validate the development rows (official train + val) and the
official test rows become the external set, so no fold model ever trains or selects on them.
"""

from __future__ import annotations

import numpy as np

from tasks.data.errors import DataError
from tasks.data.index import Task, TaskMeta

OFFICIAL = "official"  # `split: official`: the target's official test split as the external set
TEST_SPLIT = "test"  # the official split name of the held-out rows


def _official_rows(task: Task, where: str) -> np.ndarray:
    """Positions of the official test rows; DataError when the task has none."""
    test = task.index["split"].to_numpy() == TEST_SPLIT
    if not task.has_official_split or not test.any():
        raise DataError(f"{where}: split: official, but {task.meta.name} has no official test split (no rows marked "
                        f"'{TEST_SPLIT}'). Fix: name another site's data instead (dataset: ..., path: ...), or drop it.")
    if test.all():
        raise DataError(f"{where}: every row of {task.meta.name} is in its official test split, so no development rows "
                        "are left for the folds. Fix: point the target at the full dataset.")
    return np.flatnonzero(test)


def development_part(task: Task, where: str = "target.external") -> Task:
    """The rows outside the official test split (what the folds split when `split: official` is an external set)."""
    test = _official_rows(task, where)
    return task.subset(np.setdiff1d(np.arange(len(task.index)), test))


def official_test_part(task: Task, where: str = "target.external") -> Task:
    """The official test rows only: the external set of `split: official`."""
    return task.subset(_official_rows(task, where))


def align_classes(external: Task, target: TaskMeta, where: str) -> Task:
    """`external` with the target's class list and kind, its labels renumbered by class name.

    DataError (naming both class lists and the fix) when a class of the external set is not a target class,
    or when one is multi-label and the other is not."""
    if (external.meta.kind == "multilabel") != (target.kind == "multilabel"):
        raise DataError(f"{where}: {external.meta.name} is {external.meta.kind} but the target {target.name} is "
                        f"{target.kind}; an external set is scored with the target's metrics. Fix: point it at a "
                        f"{'multi-label' if target.kind == 'multilabel' else 'single-label'} dataset.")
    names, wanted = list(external.meta.class_names), list(target.class_names)
    unknown = [n for n in names if n not in wanted]
    if unknown:
        raise DataError(f"{where}: {external.meta.name} has class(es) {', '.join(map(repr, unknown))} that the target "
                        f"{target.name} does not have. External classes: {', '.join(names)}; target classes: "
                        f"{', '.join(wanted)}. Fix: rename the external set's classes (e.g. its class folders) to the "
                        "target's names, or leave those images out.")
    if names == wanted and external.meta.kind == target.kind:
        return external
    ids = np.array([wanted.index(n) for n in names], dtype=np.int64)
    index = external.index.copy()
    if target.kind == "multilabel":
        index["labels"] = [tuple(int(ids[l]) for l in labels) for labels in index["labels"]]
    else:
        index["label"] = ids[index["label"].to_numpy(dtype=np.int64)]
    return Task(TaskMeta(external.meta.name, target.class_names, target.kind), index, external.images)
