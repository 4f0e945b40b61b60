"""Minority-class extension: extra labelled images for chosen classes, in training rows only.

Hicks et al. (2018) added images from another folder to a small Medico class. Here the extra
images come from any registered dataset (usually `class-folders`: one subfolder per class); the suite
names the classes to take, matched to the target's classes by name:

    target:
      dataset: class-folders
      path: kvasir
      extra_train:
        - {dataset: class-folders, path: extra-polyps, classes: [polyps]}

The extended task keeps the target's rows first and unchanged, and marks the extra rows in the
index column `extra_train`. `TaskDataModule` splits the target's rows only (same folds as without
the extension) and appends the extra rows to the training part of every fold: they never reach
validation or test, so model selection and the reported metrics stay on the target's own images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tasks.data.errors import DataError
from tasks.data.index import Task

EXTRA_COLUMN = "extra_train"  # True for rows added by an extension (training rows in every fold)
PREFIX = "extra{}::"  # items of the j-th extension's store: "extra0::<item>"


class ExtendedImages:
    """The target's store for its own items, each extension's store for items with its prefix."""

    def __init__(self, base, extras: Sequence) -> None:
        self.base, self.extras = base, list(extras)

    def load(self, item):
        if isinstance(item, str) and item.startswith("extra") and "::" in item:
            head, _, inner = item.partition("::")
            j = int(head.removeprefix("extra"))
            store, kind = self.extras[j]
            return store.load(int(inner) if kind == "int" else inner)
        return self.base.load(item)

    def describe(self) -> str:
        extra = "; ".join(store.describe() for store, _ in self.extras)
        return f"{self.base.describe()} + extra training images: {extra}"


def base_rows(task: Task) -> np.ndarray:
    """Positions of the target's own rows (all rows when the task has no extension)."""
    if EXTRA_COLUMN not in task.index.columns:
        return np.arange(len(task.index))
    return np.flatnonzero(~task.index[EXTRA_COLUMN].to_numpy(dtype=bool))


def extra_rows(task: Task) -> np.ndarray:
    """Positions of the extension's rows (none when the task has no extension)."""
    if EXTRA_COLUMN not in task.index.columns:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(task.index[EXTRA_COLUMN].to_numpy(dtype=bool))


def extend_training(task: Task, extensions: Sequence[tuple[Task, Sequence[str], str]]) -> Task:
    """`task` plus, for each (extra task, class names, where), the extra task's images of those classes.

    `where` names the extension in errors (e.g. "suite.yaml: target.extra_train[0]"). A class the
    target does not have, or one the extra dataset has no image of, is refused with both class lists.
    """
    if task.meta.kind == "multilabel":
        raise DataError(f"{task.meta.name}: minority-class extension takes single-label targets; "
                        f"{task.meta.name} is multi-label. Fix: remove target.extra_train.")
    frames = [task.index.assign(**{EXTRA_COLUMN: False})]
    stores = []
    has_split = task.has_official_split
    for j, (extra, classes, where) in enumerate(extensions):
        if extra.meta.kind == "multilabel":
            raise DataError(f"{where}: {extra.meta.name} is multi-label; extra training images need one label each. "
                            "Fix: point it at a single-label dataset (e.g. a class-folders dataset).")
        if not classes:
            raise DataError(f"{where}: no classes named. Fix: list the target classes to extend, e.g. "
                            f"classes: [{task.meta.class_names[0]}].")
        wanted = {}
        for name in classes:
            if name not in task.meta.class_names:
                raise DataError(f"{where}: class {name!r} is not a class of the target {task.meta.name}. "
                                f"Fix: use one of {', '.join(task.meta.class_names)}.")
            if name not in extra.meta.class_names:
                raise DataError(f"{where}: the extra dataset {extra.meta.name} has no class {name!r} "
                                f"(it has {', '.join(extra.meta.class_names)}). Fix: name its folder {name!r} "
                                "or remove the class from the list.")
            wanted[extra.meta.class_names.index(name)] = task.meta.class_names.index(name)
        keep = extra.index["label"].isin(list(wanted)).to_numpy()
        if not keep.any():
            raise DataError(f"{where}: the extra dataset {extra.meta.name} has no image of {', '.join(classes)}. "
                            "Fix: check its path, or remove the extension.")
        rows = extra.index[keep]
        kind = "int" if np.issubdtype(np.asarray(rows["item"].tolist()).dtype, np.integer) else "str"
        stores.append((extra.images, kind))
        frames.append(pd.DataFrame({
            "item": [PREFIX.format(j) + str(item) for item in rows["item"]],
            "label": rows["label"].map(wanted).to_numpy(dtype=np.int64),
            "group": [PREFIX.format(j) + str(g) for g in rows["group"]],
            "split": "train" if has_split else "",
            EXTRA_COLUMN: True,
        }))
    index = pd.concat(frames, ignore_index=True)
    index["item"] = index["item"].astype(object)
    return Task(task.meta, index, ExtendedImages(task.images, stores))
