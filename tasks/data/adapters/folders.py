"""Generic class folders (ImageFolder layout), optionally under official split folders.

    root/<class>/<image>                  no official split: k-fold splits are made
    root/{train,val,test}/<class>/<image> the folder names are the official split

Works as is on `../shared/data/dtd10` (grayscale JPEGs included: `read_image` makes them RGB).
"""

from __future__ import annotations

from pathlib import Path

from tasks.data.adapters._release import IMAGE_SUFFIXES, image_files, subfolders, warn_stray_files
from tasks.data.cards import DatasetCard
from tasks.data.errors import DataError
from tasks.data.images import FileStore
from tasks.data.index import Task, TaskMeta, make_index
from tasks.data.registry import register_dataset

SPLIT_NAMES = ("train", "val", "test")


def scan_class_folders(root: Path, *, name: str) -> Task:
    """Index `root` laid out as class folders (see the module docstring)."""
    if root is None or not Path(root).is_dir():
        raise DataError(f"{name}: dataset root {root} is not a folder. Fix: pass the folder that holds the class folders (`medtl data ... --root FOLDER`; in a suite, "
                        "--data-root joined with the dataset's `path` must be that folder).")
    root = Path(root)
    top = subfolders(root)
    split_layout = bool(top) and all(p.name in SPLIT_NAMES for p in top)
    named_splits = [p.name for p in top if p.name in SPLIT_NAMES]
    if named_splits and not split_layout:
        # `train/ test/ extra/` is neither layout: read as class folders, `train` and `test` would
        # become classes and the real classes would vanish into them.
        others = [p.name for p in top if p.name not in SPLIT_NAMES]
        raise DataError(
            f"{name}: {root} mixes split folders ({', '.join(named_splits)}) with other folders ({', '.join(others[:8])}); "
            f"it is neither {root}/<class>/* nor {root}/{{train,val,test}}/<class>/*. Fix: move "
            f"{', '.join(others[:8])} out of {root} (or into the split folders as classes)."
        )
    split_roots = [(p.name, p) for p in top] if split_layout else [("", root)]
    class_names = sorted({c.name for _, folder in split_roots for c in subfolders(folder)})
    if not class_names:
        raise DataError(f"{name}: {root} has no class folders; expected {root}/<class>/<image files>.")
    items, labels, splits = [], [], []
    for split, folder in split_roots:
        for class_dir in subfolders(folder):
            files = image_files(class_dir)
            if not files:
                raise DataError(
                    f"{name}: class folder {class_dir} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                    "add its images or delete the folder so the class list is right."
                )
            for path in files:
                items.append(str(path.relative_to(root)))
                labels.append(class_names.index(class_dir.name))
                splits.append(split)
    warn_stray_files(root, name=name)
    meta = TaskMeta(name, tuple(class_names), "binary" if len(class_names) == 2 else "multiclass")
    return Task(meta, make_index(items, labels, splits=splits), FileStore(root))


@register_dataset("class-folders", card=DatasetCard(
    summary="any ImageFolder layout: one folder per class",
    layout="`<root>/<class>/*.jpg`, or `<root>/{train,val,test}/<class>/*`",
    split="folders, else k-fold",
))
def class_folders(root: Path | None) -> Task:
    """Any dataset in ImageFolder layout; the task is named after the root folder."""
    return scan_class_folders(root, name=f"class-folders:{Path(root).name if root else '?'}")
