"""A task = what a dataset adapter returns: an index DataFrame, class metadata and an image store.

Index columns (one row per image):
  item   str path relative to the store root (normalised: `./img//x.jpg` is `img/x.jpg`), or int position
         in an in-memory array
  label  int class id (multiclass / binary); absent for multilabel
  labels tuple[int, ...] of class ids (multilabel only)
  group  str that keeps related images on one side of a split (patient, video); defaults to item
  split  official split name ("train", "val", "test") or "" when the dataset has none
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import pandas as pd

from tasks.data.errors import DataError

Kind = Literal["multiclass", "binary", "multilabel"]


class ImageStore(Protocol):
    """Where the pixels live; `load` returns an (H, W, 3) uint8 RGB array."""

    def load(self, item) -> np.ndarray: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class TaskMeta:
    """What a model needs to know about the label space."""

    name: str  # registry name plus options, e.g. "gen-target" or "medmnist:breastmnist"
    class_names: tuple[str, ...]  # index i is class id i; reports and confusion matrices use them
    kind: Kind  # decides loss (CE vs BCE) and metric family
    # Byte-identical copies across classes or split sides were allowed by the dataset option
    # `allow_duplicates` (tasks.data.duplicates); False refuses them before a benchmark.
    allow_duplicates: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Task:
    """An indexed dataset; immutable so folds and subsets are derived, never edited in place."""

    meta: TaskMeta  # label space
    index: pd.DataFrame  # see the module docstring for its columns
    images: ImageStore  # pixels for `index.item`

    def __post_init__(self) -> None:
        validate_index(self.index, self.meta)

    def subset(self, rows) -> "Task":
        """The same task restricted to `rows`: a boolean mask or row positions (index reset)."""
        rows = np.asarray(rows)
        positions = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        return Task(self.meta, self.index.iloc[positions].reset_index(drop=True), self.images)

    @property
    def labels(self) -> np.ndarray:
        """Class ids for single-label tasks (what stratification uses)."""
        if self.meta.kind == "multilabel":
            raise DataError(f"Task {self.meta.name} is multilabel; use the 'labels' column.")
        return self.index["label"].to_numpy(dtype=np.int64)

    @property
    def has_official_split(self) -> bool:
        return bool((self.index["split"] != "").any())


def item_path(item):
    """A path item in one spelling (`./img//x.jpg`, `img/./x.jpg` -> `img/x.jpg`); positions are returned as is.

    Every adapter's index goes through `make_index`, so two rows naming one file by different paths
    become one repeated item, which the checks refuse instead of counting the image twice.
    """
    return posixpath.normpath(item) if isinstance(item, str) else item


def make_index(items, labels, *, groups=None, splits=None) -> pd.DataFrame:
    """Build an index frame with the standard columns and dtypes; path items are normalised (`item_path`)."""
    items = [item_path(i) for i in items]
    frame = pd.DataFrame({"item": pd.Series(items, dtype=object)})
    frame["label"] = np.asarray(labels, dtype=np.int64)
    frame["group"] = [str(g) for g in groups] if groups is not None else [str(i) for i in items]
    frame["split"] = list(splits) if splits is not None else [""] * len(items)
    return frame


def validate_index(index: pd.DataFrame, meta: TaskMeta) -> None:
    """Refuse an index that would train on wrong labels instead of failing later in a batch."""
    needed = {"item", "group", "split"} | ({"labels"} if meta.kind == "multilabel" else {"label"})
    missing = needed - set(index.columns)
    if missing:
        raise DataError(f"Task {meta.name}: index lacks columns {sorted(missing)}.")
    if len(index) == 0:
        raise DataError(f"Task {meta.name}: no images found.")
    if meta.kind != "multilabel":
        labels = index["label"].to_numpy()
        bad = (labels < 0) | (labels >= meta.num_classes)
        if bad.any():
            raise DataError(
                f"Task {meta.name}: {int(bad.sum())} label(s) outside 0..{meta.num_classes - 1} "
                f"(first at item {index['item'].iloc[int(np.argmax(bad))]!r}); the class list has "
                f"{meta.num_classes} names."
            )
