"""A generated stand-in for any dataset (registered `gen-standin`): the class names, kind and split layout of a
real dataset, tiny generated images.

    medtl benchmark papers/hicks2018 --stand-in      # benchmark/plan/standin.py swaps every real dataset for this

    dataset: gen-standin
    options: {classes: [NORMAL, PNEUMONIA], kind: binary, per_class: 6, official_split: true, size: 32, seed: 0}

Class i is a faint grating at orientation i * 180 / n degrees (alternating between two spatial
frequencies) on a tissue-like background, so the classes can be told apart a little and a cell's
metrics are not constant. `kind: multilabel` gives every image its own class plus, every other image,
a second one (the next class), patterns summed: the shape of ImageCLEF's concept labels. With
`official_split: true` about a quarter of each class's images are the official `test` rows and the
rest `train` (cells carve their validation rows from it, as for a release without a val split).
Different `seed`s give different images of the same classes: an external test set's stand-in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.data.adapters.generated import FREQUENCIES, _compose, _grating, _rng, _tissue
from tasks.data.cards import DatasetCard
from tasks.data.errors import DataError
from tasks.data.images import ArrayStore
from tasks.data.index import Task, TaskMeta, make_index
from tasks.data.registry import flag_option, register_dataset

NAME = "gen-standin"
KINDS = ("auto", "multiclass", "binary", "multilabel")  # auto: binary for 2 classes, else multiclass
TEST_SHARE = 0.25  # of each class, the official test rows when `official_split` is set


def _class_names(classes) -> tuple[str, ...]:
    names = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else [str(c).strip() for c in classes or ()]
    if len(names) < 2 or len(set(names)) != len(names) or not all(names):
        raise DataError(f"{NAME}: classes={classes!r} must name at least 2 distinct, non-empty classes, e.g. "
                        "classes: [NORMAL, PNEUMONIA].")
    return tuple(names)


def _pattern(rng, size: int, cls: int, n: int) -> np.ndarray:
    return _grating(rng, size, 180.0 * cls / n, FREQUENCIES[cls % 2], radius=size * 0.3)


def _images(names: tuple[str, ...], kind: str, per_class: int, size: int, seed: int):
    """(images, labels per image as tuples of class ids) in class order: `per_class` images whose first class is each class."""
    rng = _rng(f"{NAME}:{','.join(names)}", seed)
    n = len(names)
    images, labels = [], []
    for cls in range(n):
        for j in range(per_class):
            own = (cls, (cls + 1) % n) if kind == "multilabel" and j % 2 else (cls,)
            pattern = sum(_pattern(rng, size, c, n) for c in own)
            images.append(_compose(_tissue(rng, size), pattern, 0.3, 0.06, rng))
            labels.append(own)
    return np.stack(images), labels


@register_dataset(NAME, card=DatasetCard(
    summary="generated stand-in for a real dataset: its class names, kind and split layout, tiny images "
            "(`medtl benchmark SUITE --stand-in`)",
    layout="generated in memory (options `classes`, `kind`, `per_class`, `official_split`, `size`, `seed`)",
    split="official when `official_split`, else k-fold",
))
def gen_standin(root: Path | None = None, *, classes: str | list[str] | None = None, kind: str = "auto",
                per_class: int = 6, official_split: bool = False, size: int = 32, seed: int = 0) -> Task:
    """`root` is ignored: the images are generated in memory (see the module docstring)."""
    names = _class_names(classes)
    if kind not in KINDS:
        raise DataError(f"{NAME}: kind={kind!r} is not one of {', '.join(KINDS)}.")
    if kind == "binary" and len(names) != 2:
        raise DataError(f"{NAME}: kind=binary needs exactly 2 classes, got {len(names)} ({', '.join(names)}).")
    if int(per_class) < 2 or int(size) < 8:
        raise DataError(f"{NAME}: per_class={per_class} and size={size} must be >= 2 and >= 8.")
    kind = ("binary" if len(names) == 2 else "multiclass") if kind == "auto" else kind
    images, labels = _images(names, kind, int(per_class), int(size), int(seed))
    official = flag_option(NAME, "official_split", official_split)
    tested = max(1, round(TEST_SHARE * int(per_class)))
    splits = [("test" if i % int(per_class) < tested else "train") if official else "" for i in range(len(labels))]
    meta = TaskMeta(NAME, names, kind)
    if kind == "multilabel":
        index = make_index(range(len(labels)), [0] * len(labels), splits=splits).drop(columns="label")
        index["labels"] = labels
    else:
        index = make_index(range(len(labels)), [own[0] for own in labels], splits=splits)
    return Task(meta, index, ArrayStore(images, origin=f"{NAME} seed {seed}"))
