"""The medical pretraining source: LapGyn4 and Cataract-101 as one task (registered `lapgyn4+cataract101`).

On-disk layout (defaults; either root can be given on its own with `lapgyn4_root=` / `cataract101_root=`):

    <root>/LapGyn4_v1.2/<Part>/<class>/*.jpg     the `lapgyn4` adapter's layout
    <root>/cataract-101/{videos,phases,annotations}.csv, videos/case_<id>.mp4   the `cataract101` layout

Classes are namespaced by source: `lapgyn4:<part>/<class>` and `cataract101:<phase name>`, LapGyn4's
first. Items are `<source>:<item of that source>` and resolve through `CompositeStore`; groups are
`<source>:<group>` (so a Cataract-101 video stays whole in every split). Neither source has an official
split, so the union has none either (k-fold splits are made).

Options: `parts` goes to `lapgyn4`; `fps`, `every_n`, `cache_dir` and `missing` go to `cataract101`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data.cards import DatasetCard
from tasks.data.errors import DataError
from tasks.data.index import Task, TaskMeta
from tasks.data.registry import load_task, register_dataset

SEPARATOR = ":"


class CompositeStore:
    """Images from several stores; an item `<prefix>:<rest>` is loaded as `<rest>` from store `<prefix>`."""

    def __init__(self, stores: dict) -> None:
        bad = [p for p in stores if SEPARATOR in p or not p]
        if bad:
            raise ValueError(f"store prefixes must be non-empty and free of {SEPARATOR!r}: {bad}")
        self.stores = dict(stores)

    def load(self, item) -> np.ndarray:
        prefix, sep, rest = str(item).partition(SEPARATOR)
        if not sep or prefix not in self.stores:
            raise DataError(
                f"item {item!r} does not start with one of the prefixes {sorted(self.stores)} followed by "
                f"{SEPARATOR!r}; index items of a combined task must keep their source prefix."
            )
        return self.stores[prefix].load(rest)

    def describe(self) -> str:
        return "; ".join(f"{p}: {s.describe()}" for p, s in self.stores.items())


def union_tasks(parts: dict[str, Task], name: str) -> Task:
    """One single-label task from several, classes/items/groups prefixed with the dict key."""
    names, frames = [], []
    for prefix, task in parts.items():
        if task.meta.kind == "multilabel":
            raise DataError(f"{name}: {task.meta.name} is multilabel; only single-label tasks can be combined.")
        index = task.index[["item", "label", "group", "split"]].copy()
        index["item"] = [f"{prefix}{SEPARATOR}{i}" for i in index["item"]]
        index["label"] = index["label"].to_numpy(dtype=np.int64) + len(names)
        index["group"] = [f"{prefix}{SEPARATOR}{g}" for g in index["group"]]
        frames.append(index)
        names.extend(f"{prefix}{SEPARATOR}{c}" for c in task.meta.class_names)
    index = pd.concat(frames, ignore_index=True)
    if not all(t.has_official_split for t in parts.values()):
        # A part without an official split would have every row dropped by the official-split fold
        # (its rows are in none of train/val/test), so the union uses k-fold splits throughout.
        index["split"] = ""
    meta = TaskMeta(name, tuple(names), "binary" if len(names) == 2 else "multiclass")
    return Task(meta, index, CompositeStore({p: t.images for p, t in parts.items()}))


@register_dataset("lapgyn4+cataract101", card=DatasetCard(
    summary="LapGyn4 + Cataract-101 as one medical pretraining source (Hicks et al.), classes namespaced",
    layout="both of the above under one root (`LapGyn4_v1.2/`, `cataract-101/`)",
    split="grouped k-fold",
    obtain="both parts by hand (`lapgyn4`, `cataract101`)",
    settings=("lapgyn4_root", "cataract101_root", "cache_dir"),
))
def lapgyn4_cataract101(
    root: Path | None,
    *,
    lapgyn4_root: Path | str | None = None,
    cataract101_root: Path | str | None = None,
    parts: str | list[str] | None = None,
    fps: float | None = None,
    every_n: int | None = None,
    cache_dir: Path | str | None = None,
    missing: str = "error",
) -> Task:
    """LapGyn4 + Cataract-101 as one pretraining source (see the module docstring)."""
    if root is None and (lapgyn4_root is None or cataract101_root is None):
        raise DataError(
            "lapgyn4+cataract101 needs --data-root <folder holding LapGyn4_v1.2 and cataract-101>, or both "
            "lapgyn4_root= and cataract101_root=."
        )
    lapgyn4_root = Path(lapgyn4_root) if lapgyn4_root is not None else Path(root) / "LapGyn4_v1.2"
    cataract101_root = Path(cataract101_root) if cataract101_root is not None else Path(root) / "cataract-101"
    for label, path, option in (("LapGyn4", lapgyn4_root, "lapgyn4_root"), ("Cataract-101", cataract101_root,
                                                                            "cataract101_root")):
        if not path.is_dir():
            raise DataError(f"lapgyn4+cataract101: {label} folder {path} not found; put it there or pass {option}=.")
    parts_ = {
        "lapgyn4": load_task("lapgyn4", lapgyn4_root, parts=parts),
        "cataract101": load_task("cataract101", cataract101_root, fps=fps, every_n=every_n, cache_dir=cache_dir, missing=missing),
    }
    return union_tasks(parts_, "lapgyn4+cataract101")
