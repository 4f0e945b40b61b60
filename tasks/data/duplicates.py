"""Byte-identical images that make a score wrong: one image under two classes, or on both sides of a split.

    medtl benchmark my-suite.yaml             # refused before the first cell (exit 2), naming the copies
    target: {dataset: class-folders, path: set, options: {allow_duplicates: true}}   # the explicit opt-out

A copied file or a symlinked class folder loads as two images. `data verify` reports every identical
set as a warning (a publisher's release may hold some); before a benchmark, `check_task` refuses the
sets that change a score (unless the dataset option `allow_duplicates` is true, which the task's
`meta.allow_duplicates` carries into the run's logged options):
  - copies with different labels: the image is trained as both classes;
  - copies a split can put on both sides: different groups (k-fold deals groups to folds independently,
    so one copy is tested while the other is trained on) or different official splits.
Copies in one group, split and class (identical frames of one video) only weigh that image twice.

Identity is the bytes, hashed once each and never decoded: a file's bytes, an array's row. Measured on
2 shared, busy CPU cores, the whole check: BreastMNIST (780 arrays) 15-30 ms, the PneumoniaMNIST subset
(2,428 arrays) ~60 ms, dtd10 (1,200 JPEGs, 25 MB) 0.25-0.3 s warm and 1.6 s from a cold disk cache. Paths are
normalised when the index is built (`index.item_path`), so `img/x.jpg` and `./img/x.jpg` are one item.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tasks.data.errors import ImageReadError
from tasks.data.index import Task

ALLOW_OPTION = "allow_duplicates"  # the dataset option (every dataset takes it) that lets copies through
SHOWN = 5  # identical sets quoted in an error; the count says how many more
FIX = ("delete the copies (a copied file, or a symlinked or copied class folder) so each image is in the "
       f"dataset once; or, if the release really holds them and slightly optimistic scores are acceptable, set "
       f"the dataset option {ALLOW_OPTION}: true (suite: target.options; CLI: --option {ALLOW_OPTION}=true), "
       "which the run records")


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def file_digest(path: Path) -> bytes:
    """Digest of a file's bytes (no decoding)."""
    try:
        return _digest(Path(path).read_bytes())
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})",
                             "check the dataset root and that the file is readable") from exc


def array_digest(pixels: np.ndarray) -> bytes:
    """Digest of an image array's shape, dtype and bytes."""
    pixels = np.ascontiguousarray(pixels)
    return _digest(f"{pixels.shape}{pixels.dtype}".encode() + pixels.tobytes())


def item_digest(store, item) -> bytes:
    """Digest of one index item: file bytes (FileStore), array row (ArrayStore), else the decoded pixels."""
    if hasattr(store, "stores"):  # CompositeStore: "<prefix>:<item>" of one of its stores
        prefix, _, rest = str(item).partition(":")
        return item_digest(store.stores[prefix], rest)
    if hasattr(store, "root"):
        return file_digest(Path(store.root) / str(item))
    if hasattr(store, "array"):
        return array_digest(store.array[int(item)])
    return array_digest(store.load(item))


def image_digests(task: Task, *, workers: int | None = None) -> np.ndarray:
    """One digest per index row (rows naming the same item share one read)."""
    items = list(dict.fromkeys(task.index["item"].tolist()))
    if hasattr(task.images, "array"):  # in memory: threads would only add their overhead
        digests = {item: item_digest(task.images, item) for item in items}
    else:
        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:  # file reads release the GIL
            digests = dict(zip(items, pool.map(lambda item: item_digest(task.images, item), items)))
    return np.asarray([digests[item] for item in task.index["item"].tolist()], dtype=object)


def identical_sets(digests) -> list[np.ndarray]:
    """Row positions of each set of rows with one digest, for sets of two or more; in first-row order."""
    rows: dict[bytes, list[int]] = defaultdict(list)
    for row, digest in enumerate(digests):
        rows[digest].append(row)
    return [np.asarray(r) for r in rows.values() if len(r) > 1]


def _labels(task: Task) -> list:
    column = "labels" if task.meta.kind == "multilabel" else "label"
    return task.index[column].tolist()


def harmful_copies(task: Task, digests=None) -> list[tuple[np.ndarray, str]]:
    """(rows, why) for every identical set that would make a score wrong (see the module docstring)."""
    digests = image_digests(task) if digests is None else digests
    labels, groups, splits = _labels(task), task.index["group"].tolist(), task.index["split"].tolist()
    found = []
    for rows in identical_sets(digests):
        why = []
        if len({str(labels[r]) for r in rows}) > 1:
            why.append("different classes")
        if len({splits[r] for r in rows}) > 1:
            why.append(f"splits {'/'.join(sorted({splits[r] for r in rows}))}")
        elif len({groups[r] for r in rows}) > 1:
            why.append("different groups, which k-fold can put on both sides of train/test")
        if why:
            found.append((rows, ", ".join(why)))
    return found


def _describe(task: Task, rows: np.ndarray, why: str) -> str:
    names, labels, splits = task.meta.class_names, _labels(task), task.index["split"].tolist()
    items = task.index["item"].tolist()

    def one(r: int) -> str:
        label = labels[r]
        cls = "+".join(names[i] for i in label) if isinstance(label, tuple) else names[label]
        return f"{items[r]!r} (class {cls}{', ' + splits[r] if splits[r] else ''})"

    return " = ".join(one(int(r)) for r in rows[:SHOWN]) + f" [{why}]"


def duplicate_problems(task: Task, digests=None) -> list[tuple[str, str]]:
    """(problem, fix) naming the first identical sets that would make a score wrong; empty when none or allowed."""
    if task.meta.allow_duplicates:
        return []
    found = harmful_copies(task, digests)
    if not found:
        return []
    shown = "; ".join(_describe(task, rows, why) for rows, why in found[:SHOWN])
    more = f" (and {len(found) - SHOWN} more)" if len(found) > SHOWN else ""
    return [(f"{len(found)} set(s) of byte-identical images that would be trained as two classes or trained and "
             f"tested on: {shown}{more}", FIX)]
