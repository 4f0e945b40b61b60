"""MedMNIST `.npz` files (`<flag>.npz`, `<flag>_{64,128,224}.npz`) with their official splits.

Class names and task type come from the `medmnist` package's `INFO`, so every 2D flag works
without a table of our own. `root` is the .npz file itself or the folder that holds it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.errors import DataError
from tasks.images import ArrayStore
from tasks.index import Task, TaskMeta, make_index
from tasks.registry import register_dataset


def medmnist_info() -> dict:
    from medmnist import INFO  # imported lazily: the package pulls in much we do not use

    return INFO


def _flag_from_stem(stem: str, info: dict) -> str:
    # "breastmnist_64" -> breastmnist; "pneumoniamnist_train" (a subset file) -> pneumoniamnist
    candidates = [flag for flag in info if stem == flag or stem.startswith(flag + "_")]
    if not candidates:
        raise DataError(
            f"Cannot tell the MedMNIST flag from file name {stem!r}; pass flag=<one of {', '.join(sorted(info))}>."
        )
    return max(candidates, key=len)


def _resolve_file(root: Path, flag: str | None, size: int) -> Path:
    if root.is_file():
        return root
    stem = flag if size == 28 else f"{flag}_{size}"
    path = root / f"{stem}.npz"
    if flag is None or not path.is_file():
        raise DataError(
            f"MedMNIST file {path if flag else root / '<flag>.npz'} not found; pass the .npz path as --data-root "
            "or download it with `medtl data download medmnist --root DIR`."
        )
    return path


@register_dataset("medmnist")
def medmnist(root: Path | None, *, flag: str | None = None, size: int = 28) -> Task:
    """A MedMNIST 2D dataset from its official `.npz` (train/val/test keys, any subset of them)."""
    if root is None:
        raise DataError("medmnist needs --data-root: the .npz file or the folder holding <flag>.npz.")
    path = _resolve_file(Path(root), flag, size)
    info = medmnist_info()
    flag = flag or _flag_from_stem(path.stem, info)
    if flag not in info:
        raise DataError(f"Unknown MedMNIST flag {flag!r}. Valid flags: {', '.join(sorted(info))}.")
    entry = info[flag]
    try:
        data = np.load(path)
    except Exception as exc:  # noqa: BLE001 - zip/pickle/format errors all mean a bad download
        raise DataError(f"{path}: not a readable .npz ({exc}). Re-download it.") from exc
    splits = [s for s in ("train", "val", "test") if f"{s}_images" in data.files]
    if not splits:
        raise DataError(f"{path}: no '<split>_images' arrays (found {data.files}); is this a MedMNIST file?")
    images = np.concatenate([data[f"{s}_images"] for s in splits])
    labels = np.concatenate([data[f"{s}_labels"] for s in splits])
    split_col = np.concatenate([[s] * len(data[f"{s}_images"]) for s in splits])
    names = tuple(entry["label"][str(i)] for i in range(len(entry["label"])))
    task_type = entry["task"]
    name = f"medmnist:{flag}" if path.stem == flag or size != 28 else f"medmnist:{path.stem}"
    if task_type.startswith("multi-label"):
        index = make_index(range(len(images)), np.zeros(len(images)), splits=split_col)
        index = index.drop(columns="label")
        index["labels"] = [tuple(np.flatnonzero(row).tolist()) for row in labels]
        kind = "multilabel"
    else:
        index = make_index(range(len(images)), labels.reshape(-1), splits=split_col)
        kind = "binary" if len(names) == 2 else "multiclass"
    return Task(TaskMeta(name, names, kind), index, ArrayStore(images, origin=str(path)))
