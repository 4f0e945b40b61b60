"""Generic class folders (ImageFolder layout), optionally under official split folders.

    root/<class>/<image>                  no official split: k-fold splits are made
    root/{train,val,test}/<class>/<image> the folder names are the official split

Works as is on `../shared/data/dtd10` (grayscale JPEGs included: `read_image` makes them RGB).
"""

from __future__ import annotations

from pathlib import Path

from tasks.errors import DataError
from tasks.images import FileStore
from tasks.index import Task, TaskMeta, make_index
from tasks.registry import register_dataset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
SPLIT_NAMES = ("train", "val", "test")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_class_folders(root: Path, *, name: str) -> Task:
    """Index `root` laid out as class folders (see the module docstring)."""
    if root is None or not Path(root).is_dir():
        raise DataError(f"{name}: dataset root {root} is not a folder; pass --data-root pointing at the class folders.")
    root = Path(root)
    top = _class_dirs(root)
    split_layout = bool(top) and all(p.name in SPLIT_NAMES for p in top)
    split_roots = [(p.name, p) for p in top] if split_layout else [("", root)]
    class_names = sorted({c.name for _, folder in split_roots for c in _class_dirs(folder)})
    if not class_names:
        raise DataError(f"{name}: {root} has no class folders; expected {root}/<class>/<image files>.")
    items, labels, splits = [], [], []
    for split, folder in split_roots:
        for class_dir in _class_dirs(folder):
            files = _images_in(class_dir)
            if not files:
                raise DataError(
                    f"{name}: class folder {class_dir} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                    "add its images or delete the folder so the class list is right."
                )
            for path in files:
                items.append(str(path.relative_to(root)))
                labels.append(class_names.index(class_dir.name))
                splits.append(split)
    from tasks.adapters.release import warn_stray_files  # release imports this module's suffixes

    warn_stray_files(root, name=name)
    meta = TaskMeta(name, tuple(class_names), "binary" if len(class_names) == 2 else "multiclass")
    return Task(meta, make_index(items, labels, splits=splits), FileStore(root))


@register_dataset("class-folders")
def class_folders(root: Path | None, **_: object) -> Task:
    """Any dataset in ImageFolder layout; the task is named after the root folder."""
    return scan_class_folders(root, name=f"class-folders:{Path(root).name if root else '?'}")
