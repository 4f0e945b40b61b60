"""MedMNIST `.npz` files (`<flag>.npz`, `<flag>_{64,128,224}.npz`) with their official splits.

Class names and task type come from the `medmnist` package's `INFO`, so every 2D flag works
without a table of our own. `root` is the .npz file itself or the folder that holds it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.data.cards import DatasetCard, Published, RemoteFile, Source
from tasks.data.errors import DataError
from tasks.data.images import ArrayStore
from tasks.data.index import Task, TaskMeta, make_index
from tasks.data.registry import register_dataset


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
            f"MedMNIST file {path if flag else root / '<flag>.npz'} not found. Fix: give the .npz file (or its folder "
            "with option flag=<flag>) as the dataset root: `--root FILE` for medtl data; in a suite, --data-root joined "
            "with the dataset's `path`. Or download it with `medtl data download medmnist --root DIR --option flag=<flag>`."
        )
    return path


def _check_arrays(path: Path, data, splits: list[str]) -> None:
    """Every `<split>_images` has a `<split>_labels` of the same length, or the labels would shift."""
    fix = "re-download it (medtl data download medmnist --root DIR --option flag=<flag>)"
    for split in splits:
        if f"{split}_labels" not in data.files:
            raise DataError(f"{path}: has '{split}_images' but no '{split}_labels' array (found {data.files}). Fix: {fix}.")
        try:
            n_images, n_labels = len(data[f"{split}_images"]), len(data[f"{split}_labels"])
        except Exception as exc:  # noqa: BLE001 - a truncated member raises zipfile/ValueError/EOFError
            raise DataError(f"{path}: array '{split}_*' cannot be read ({exc}). Fix: {fix}.") from exc
        if n_images != n_labels:
            raise DataError(f"{path}: '{split}_images' holds {n_images} images but '{split}_labels' {n_labels} labels; "
                            f"the labels would not match the images. Fix: {fix}.")
        _check_pixels(path, f"{split}_images", data[f"{split}_images"], fix)


def _check_pixels(path: Path, key: str, images: np.ndarray, fix: str) -> None:
    """8-bit pixels only: float arrays (0..1 or 0..255) would otherwise fail per cell with numpy's words."""
    if images.dtype == np.uint8:
        return
    kind = np.dtype(images.dtype).kind
    span = f", values {images.min():.4g}..{images.max():.4g}" if kind in "fiub" and images.size else ""
    unit = kind == "f" and images.size and float(images.max()) <= 1.0  # 0..1 floats: scale, do not truncate
    convert = f"np.savez(FILE, ..., {key}=" + ("(x * 255).round().astype(np.uint8))" if unit else
                                               "x.round().clip(0, 255).astype(np.uint8))")
    raise DataError(f"{path}: array '{key}' holds {images.dtype} pixels{span}; MedMNIST images are 8-bit "
                    f"(uint8, 0..255). Fix: {fix}, or convert the array: {convert}.")


def _sources() -> dict[str, Source]:
    """Every MedMNIST flag and size with its published MD5, straight from the package's INFO."""
    sources = {}
    for flag, entry in medmnist_info().items():
        for key in [k for k in entry if k == "url" or k.startswith("url_")]:
            suffix = key[len("url"):]  # "" or "_64" / "_128" / "_224"
            stem = f"{flag}{suffix}"
            sources[f"medmnist:{stem}"] = Source(
                folder=f"{stem}.npz",
                files=(RemoteFile(entry[key], md5=entry.get(f"MD5{suffix}"), archive="none"),),
                page="https://medmnist.com/",
                layout=f"{stem}.npz (keys <split>_images, <split>_labels)",
                licence=entry.get("license", "see medmnist.com"),
            )
    return sources


def _variant_key(options) -> str:
    """flag/size options -> `medmnist:<flag>[_<size>]`, the key of `_sources()`."""
    flag, size = options.get("flag"), int(options.get("size") or 28)
    if not flag:
        raise DataError("medmnist needs a flag to download: add --option flag=<flag>, e.g. flag=breastmnist.")
    return f"medmnist:{flag}" if size == 28 else f"medmnist:{flag}_{size}"


def official_file(task: Task) -> tuple[str, str] | None:
    """(flag, INFO md5 key) when the task was read from a whole official MedMNIST file, else None."""
    info = medmnist_info()
    stem = Path(getattr(task.images, "origin", "")).stem
    flag, _, size = stem.rpartition("_")
    if stem in info:
        return stem, "MD5"
    if flag in info and size in ("64", "128", "224"):
        return flag, f"MD5_{size}"
    return None


def _published(task: Task) -> Published | None:
    official = official_file(task)
    if official is None:
        return None
    entry = medmnist_info()[official[0]]
    splits = {s: int(n) for s, n in entry["n_samples"].items()}
    return Published(sum(splits.values()), len(entry["label"]), splits=(splits,))


CARD = DatasetCard(
    summary="MedMNIST v2 (any 2D flag and size; ChestMNIST is multi-label), official splits",
    layout="`<flag>.npz` / `<flag>_{64,128,224}.npz` (root = the file or its folder; option `flag`, `size`); class "
           "names and task type from `medmnist.INFO`",
    split="official",
    variants=_sources,
    variant_key=_variant_key,
    published_for=_published,
)


@register_dataset("medmnist", card=CARD)
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
    _check_arrays(path, data, splits)
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
