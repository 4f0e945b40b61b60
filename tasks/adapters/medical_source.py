"""The medical pretraining source: LapGyn4 and Cataract-101 as one task (registered `lapgyn4+cataract101`).

On-disk layout (defaults; either root can be given on its own with `lapgyn4_root=` / `cataract101_root=`):

    <root>/LapGyn4_v1.2/<Part>/<class>/*.jpg     the `lapgyn4` adapter's layout
    <root>/cataract-101/{videos,phases,annotations}.csv, videos/case_<id>.mp4   the `cataract101` layout

Classes are namespaced by source: `lapgyn4:<part>/<class>` and `cataract101:<phase name>`, LapGyn4's
first. Items are `<source>:<item of that source>` and resolve through `CompositeStore`; groups are
`<source>:<group>` (so a Cataract-101 video stays whole in every split). Neither source has an official
split, so the union has none either (k-fold splits are made).

Options: those named by the `cataract101` adapter (fps, every_n, cache_dir, missing) go to it; every
other option (e.g. `parts=`) goes to `lapgyn4`.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.adapters.cataract101 import cataract101
from tasks.errors import DataError
from tasks.index import Task, TaskMeta
from tasks.registry import load_task, register_dataset

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


def _cataract101_options() -> set[str]:
    params = inspect.signature(cataract101).parameters.values()
    return {p.name for p in params if p.kind == inspect.Parameter.KEYWORD_ONLY}


@register_dataset("lapgyn4+cataract101")
def lapgyn4_cataract101(
    root: Path | None,
    *,
    lapgyn4_root: Path | str | None = None,
    cataract101_root: Path | str | None = None,
    **options,
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
    c101_keys = _cataract101_options()
    c101_options = {k: v for k, v in options.items() if k in c101_keys}
    lapgyn4_options = {k: v for k, v in options.items() if k not in c101_keys}
    try:
        lapgyn4 = load_task("lapgyn4", lapgyn4_root, **lapgyn4_options)
    except TypeError as exc:  # an option neither adapter takes
        raise DataError(
            f"lapgyn4+cataract101: option(s) {sorted(lapgyn4_options)} not understood ({exc}). Options "
            f"{sorted(c101_keys)} go to cataract101; every other option goes to lapgyn4 (e.g. parts=)."
        ) from exc
    parts = {"lapgyn4": lapgyn4, "cataract101": load_task("cataract101", cataract101_root, **c101_options)}
    return union_tasks(parts, "lapgyn4+cataract101")
