"""Several datasets as one source (registered `union`): pretraining on the union of sources (Cheplygina 2019).

    pretrain:
      dataset: union
      options:
        members:
          - {dataset: lapgyn4, path: LapGyn4_v1.2}
          - {dataset: cataract101, path: cataract-101, options: {every_n: 25}}
          - {name: chest, dataset: chest-xray, path: chest_xray}

Each member is `{dataset: NAME, path: FOLDER, options: {...}, name: PREFIX}`: `dataset` a registered
dataset, `path` its folder relative to the union's root (the data root, or the suite block's
`path` under it; empty or absent: the root itself; an absolute path is used as is), `options` that
adapter's options (checked by it), `name` the prefix that keeps the member apart (default: the
dataset name; members of one dataset need distinct names). Classes are `<name>:<class>`, so they
never collide, items `<name>:<item>` (images load through `CompositeStore`) and groups
`<name>:<group>` (a patient or video of one member never merges with another member's). Members
must be single-label. The union keeps the members' official splits only when every member has
one; otherwise cells make k-fold splits of the whole union.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.data.cards import DatasetCard
from tasks.data.errors import DataError
from tasks.data.index import Task, TaskMeta
from tasks.data.registry import list_datasets, load_task, register_dataset

SEPARATOR = ":"
MEMBER_KEYS = ("dataset", "path", "options", "name")  # what a member entry may hold


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


def _member_root(root: Path | None, path: str | None, where: str) -> Path | None:
    if not path:
        return root
    if Path(path).is_absolute():
        return Path(path)
    if root is None:
        raise DataError(f"{where}: path {path!r} is relative to the data root, but there is none; pass --data-root "
                        "(or give an absolute path).")
    return root / path


def load_members(root: Path | None, members: Sequence[Mapping[str, Any]], name: str = "union") -> Task:
    """The union task of `members` (see the module docstring), each loaded by its own adapter."""
    if isinstance(members, (str, Mapping)) or not members:
        raise DataError(f"{name}: option members must be a non-empty list of {{dataset: NAME, path: FOLDER, "
                        f"options: {{...}}, name: PREFIX}}, got {members!r}.")
    parts: dict[str, Task] = {}
    for position, member in enumerate(members, start=1):
        where = f"{name} member {position}"
        if not isinstance(member, Mapping) or "dataset" not in member:
            raise DataError(f"{where} must be a mapping with at least `dataset: NAME`, got {member!r}.")
        unknown = sorted(set(member) - set(MEMBER_KEYS))
        if unknown:
            raise DataError(f"{where} has unknown key(s) {', '.join(unknown)}. Valid keys: {', '.join(MEMBER_KEYS)}.")
        dataset = str(member["dataset"])
        if dataset == "union":
            raise DataError(f"{where}: a union cannot hold a union; list its members here instead.")
        if dataset not in list_datasets():
            raise DataError(f"{where}: unknown dataset {dataset!r}. Valid datasets: {', '.join(list_datasets())}.")
        prefix = str(member.get("name") or dataset)
        if SEPARATOR in prefix:
            raise DataError(f"{where}: name {prefix!r} may not contain {SEPARATOR!r}; give the member a plain `name:`.")
        if prefix in parts:
            raise DataError(f"{where}: the name {prefix!r} is taken by an earlier member; give each member of one "
                            "dataset its own `name:` (it prefixes the member's classes).")
        options = member.get("options") or {}
        if not isinstance(options, Mapping):
            raise DataError(f"{where}: options must be a mapping of {dataset}'s options, got {options!r}.")
        parts[prefix] = load_task(dataset, _member_root(root, member.get("path"), where), **options)
    return union_tasks(parts, name)


@register_dataset("union", card=DatasetCard(
    summary="several datasets as one source (Cheplygina: a union of sources), classes prefixed by member",
    layout="each member's own layout, at its `path` under the root",
    split="members' official splits if all have one, else (grouped) k-fold",
    obtain="each member as its own dataset says",
))
def union(root: Path | None, *, members: Sequence[Mapping[str, Any]] = ()) -> Task:
    """The members as one task (see the module docstring)."""
    return load_members(root, members)
