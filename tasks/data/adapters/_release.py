"""What publishers' release archives look like once extracted, shared by the real-dataset adapters.

A release zip usually extracts to one named folder (`kvasir-dataset-v2/`, `chest_xray/`,
`LapGyn4_v1.2/`) holding the class folders, so users pass either that folder or the one they
extracted into. `locate_release` accepts both. Archives also carry files that are not images
(`Thumbs.db`, `.DS_Store`, a README, a labels CSV); those are skipped with a warning that names
them, never turned into a class or an image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from tasks.data.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


def subfolders(folder: Path) -> list[Path]:
    """Visible subfolders, sorted (hidden ones such as `.git` or `.ipynb_checkpoints` are skipped)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    """Image files below `folder` (recursive, sorted), by suffix; non-images are left to `warn_stray_files`."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def locate_release(
    root: Path | None, *, name: str, holds: Callable[[Path], bool], folder_names: Iterable[str] = (), expect: str
) -> Path:
    """The release folder: `root` itself, `root/<one of folder_names>`, or the only subfolder of root that `holds`.

    `expect` describes the layout for the error message, e.g. "<class>/*.jpg".
    """
    if root is None or not Path(root).is_dir():
        raise DataError(f"{name}: dataset root {root} is not a folder. Fix: pass the extracted release folder (`medtl data ... --root FOLDER`; in a "
                        "suite, --data-root joined with the dataset's `path` must be that folder).")
    root = Path(root)
    folder_names = tuple(folder_names)
    for candidate in (root, *(root / n for n in folder_names)):
        if candidate.is_dir() and holds(candidate):
            return candidate
    matching = [p for p in subfolders(root) if holds(p)]
    if len(matching) == 1:
        return matching[0]
    hint = f" or {root}/{folder_names[0]}/" if folder_names else ""
    found = ", ".join(p.name for p in subfolders(root)[:8]) or "no folders"
    raise DataError(
        f"{name}: cannot find the release under {root} (it holds: {found}). Expected {root}/{expect}{hint}{expect}; "
        "Fix: pass the extracted folder (`--root` for medtl data; in a suite, --data-root joined with the dataset's `path`)."
    )


def check_class_folders(found: Iterable[str], expected: Iterable[str], *, name: str, where: Path) -> None:
    """Refuse a class list that differs from the publisher's: a missing or extra folder shifts every label id."""
    found, expected = set(found), set(expected)
    missing, extra = sorted(expected - found), sorted(found - expected)
    if missing:
        raise DataError(
            f"{name}: {where} lacks class folder(s) {', '.join(missing)}; the release has {len(expected)} classes. "
            "Fix: re-extract the complete release archive there."
        )
    if extra:
        raise DataError(
            f"{name}: {where} holds folder(s) {', '.join(extra)} that are not classes of this dataset "
            f"(expected only {', '.join(sorted(expected))}). Fix: move them out of the dataset folder, "
            "or use the generic `class-folders` dataset for a modified copy."
        )


def warn_stray_files(folder: Path, *, name: str, allowed: Iterable[str] = ()) -> list[Path]:
    """Warn about non-image files below `folder` (they are not indexed); return them.

    `allowed` are file names the release is known to ship (e.g. a labels CSV) and stay quiet.
    """
    allowed = set(allowed)
    stray = sorted(
        p
        for p in Path(folder).rglob("*")
        if p.is_file()
        and p.suffix.lower() not in IMAGE_SUFFIXES
        and p.name not in allowed
        and not p.name.startswith(".")  # .DS_Store and friends: noise, not worth a warning
        and p.name != "Thumbs.db"
    )
    if stray:
        shown = ", ".join(str(p.relative_to(folder)) for p in stray[:5])
        warnings.warn(
            f"{name}: ignored {len(stray)} file(s) under {folder} that are not images by their suffix "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}): {shown}{' ...' if len(stray) > 5 else ''}. "
            "Move them out of the dataset folder to silence this; rename real images to their proper suffix.",
            stacklevel=3,
        )
    return stray
