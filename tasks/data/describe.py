"""What is in a dataset: class histogram per official split, image sizes, groups, splits.

    medtl data describe hyperkvasir --root ~/data/labeled-images
    python -m benchmark.data_cli describe class-folders --root ../shared/data/dtd10 --option sample=100

Image sizes are read from file headers (no decoding) on a seeded random sample of `sample` images,
so describing a 100k-image set takes seconds; arrays (MedMNIST) are measured whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tabulate import tabulate

from tasks.data.images import ArrayStore, FileStore
from tasks.data.index import Task
from tasks.data.registry import load_task


@dataclass(frozen=True)
class Description:
    name: str  # the task's name as the adapter gives it
    kind: str  # multiclass / binary / multilabel
    classes: pd.DataFrame  # index: class name; one column per official split (or "images"), plus "total"
    splits: pd.DataFrame  # index: split ("" = none); columns images, groups, share
    groups: pd.DataFrame  # index: split or "all"; groups and images-per-group min / median / max
    sizes: pd.DataFrame  # columns width, height, images: how many sampled images have that size
    sampled: int  # images measured for `sizes`
    unreadable: list[str] = field(default_factory=list)  # sampled files whose header could not be read

    def to_text(self) -> str:
        def table(frame: pd.DataFrame, index: bool = True) -> str:
            return tabulate(frame, headers="keys", tablefmt="simple", showindex=index)

        total = int(self.splits["images"].sum())
        parts = [
            f"{self.name}: {total} images, {len(self.classes)} classes ({self.kind})",
            "Classes\n" + table(self.classes),
            "Splits\n" + table(self.splits.rename(index={"": "(none)"})),
            "Groups (images per group)\n" + table(self.groups.rename(index={"": "(none)"})),
            f"Image sizes of {self.sampled} images: {self._size_range()}\n" + table(self.sizes.head(10), index=False),
        ]
        if len(self.sizes) > 10:
            parts[-1] += f"\n... and {len(self.sizes) - 10} other sizes"
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} unreadable: {', '.join(self.unreadable[:10])} "
                         "(run `medtl data verify` for details)")
        return "\n\n".join(parts)

    def _size_range(self) -> str:
        if self.sizes.empty:
            return "none readable"
        counts = self.sizes["images"].to_numpy()
        spans = []
        for axis in ("width", "height"):
            values = np.repeat(self.sizes[axis].to_numpy(), counts)
            spans.append(f"{axis} {values.min()}..{values.max()} (median {np.median(values):g})")
        return ", ".join(spans)


def describe(name: str, root: Path | str | None, *, sample: int = 500, seed: int = 0, **options) -> Description:
    """Summarise dataset `name` under `root` (adapter `options` as for `load_task`)."""
    task = load_task(name, root, **options)
    sizes, sampled, unreadable = _image_sizes(task, sample, seed)
    return Description(task.meta.name, task.meta.kind, _class_histogram(task), _splits(task), _groups(task),
                       sizes, sampled, unreadable)


def _class_histogram(task: Task) -> pd.DataFrame:
    index = task.index
    if task.meta.kind == "multilabel":  # one count per (image, label) pair
        index = index.explode("labels").dropna(subset=["labels"]).rename(columns={"labels": "label"})
    names = pd.Categorical.from_codes(index["label"].astype(int), categories=list(task.meta.class_names))
    if task.has_official_split:
        frame = pd.crosstab(pd.Series(names, name="class"), pd.Series(index["split"].to_numpy(), name="split"),
                            dropna=False)
        order = [s for s in ("train", "val", "test") if s in frame.columns]
        frame = frame[order + [c for c in frame.columns if c not in order]]
    else:
        frame = pd.Series(names, name="class").value_counts(sort=False).rename("images").to_frame()
    frame["total"] = frame.sum(axis=1)
    frame.columns.name = None
    return frame


def _splits(task: Task) -> pd.DataFrame:
    frame = task.index.groupby("split", sort=False).agg(images=("item", "size"), groups=("group", "nunique"))
    frame["share"] = (frame["images"] / frame["images"].sum()).round(3)
    return frame


def _groups(task: Task) -> pd.DataFrame:
    def summary(index: pd.DataFrame) -> dict:
        per_group = index.groupby("group").size()
        return {"groups": per_group.size, "min": int(per_group.min()), "median": float(per_group.median()),
                "max": int(per_group.max())}

    rows = {"all": summary(task.index)}
    if task.has_official_split:
        rows.update({split: summary(part) for split, part in task.index.groupby("split", sort=False)})
    return pd.DataFrame.from_dict(rows, orient="index")


def _image_sizes(task: Task, sample: int, seed: int) -> tuple[pd.DataFrame, int, list[str]]:
    store, items = task.images, task.index["item"].drop_duplicates().to_numpy()
    if isinstance(store, ArrayStore):  # one array: every image has its shape
        h, w = store.array.shape[1:3]
        return pd.DataFrame({"width": [w], "height": [h], "images": [len(items)]}), len(items), []
    if len(items) > sample:
        items = np.random.default_rng(seed).choice(items, size=sample, replace=False)
    sizes, unreadable = [], []
    for item in items:
        try:
            if isinstance(store, FileStore):
                with Image.open(store.root / str(item)) as img:  # header only; EXIF rotation ignored
                    sizes.append(img.size)
            else:
                h, w = store.load(item).shape[:2]
                sizes.append((w, h))
        except Exception:  # noqa: BLE001 - describe summarises; verify reports the exact error
            unreadable.append(str(item))
    frame = pd.DataFrame(sizes, columns=["width", "height"])
    frame = frame.value_counts().rename("images").reset_index().sort_values(["images", "width"], ascending=[False, True])
    return frame.reset_index(drop=True), len(items), unreadable
