"""LapGyn4 v1.2: gynecologic laparoscopy frames in four parts, each a set of class folders.

    LapGyn4_v1.2/Actions_on_Anatomy/<class>/*.jpg
    LapGyn4_v1.2/Anatomical_Structures/<class>/*.jpg
    LapGyn4_v1.2/Instrument_Count/<class>/*.jpg
    LapGyn4_v1.2/Surgical_Actions/<class>/*.jpg

`--data-root` is `LapGyn4_v1.2/` or the folder holding it. Class names are `<part>/<class>`, so
parts with a same-named class stay apart. Option `parts` (a list or a comma-separated string)
picks parts; default all four. No official split and no case ids in the file names: frames of one
surgery are near-duplicates, so k-fold scores on LapGyn4 are optimistic; it is meant as a
pretraining *source*, where that does not matter.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tasks.data.adapters.folders import scan_class_folders
from tasks.data.adapters._release import locate_release, warn_stray_files
from tasks.data.cards import DatasetCard, Source
from tasks.data.errors import DataError
from tasks.data.images import FileStore
from tasks.data.index import Task, TaskMeta, make_index
from tasks.data.registry import register_dataset

PARTS = ("Actions_on_Anatomy", "Anatomical_Structures", "Instrument_Count", "Surgical_Actions")
CARD = DatasetCard(
    summary="LapGyn4 v1.2 gynecologic laparoscopy frames (medical pretraining source), four parts",
    layout="`LapGyn4_v1.2/{Actions_on_Anatomy,Anatomical_Structures,Instrument_Count,Surgical_Actions}/<class>/*.jpg`; "
           "classes `<part>/<class>`; option `parts`",
    source=Source(
        folder="LapGyn4_v1.2", page="http://ftp.itec.aau.at/datasets/LapGyn4/",
        manual="Fill in the ITEC Klagenfurt download form on the page; unzip the archive you receive under the root.",
        layout="LapGyn4_v1.2/{Actions_on_Anatomy,Anatomical_Structures,Instrument_Count,Surgical_Actions}/<class>/*.jpg",
        licence="research only; cite Leibetseder et al. 2018"),
)


def parse_parts(parts: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Normalise the `parts` option; unknown names are an error listing the valid ones."""
    if parts is None:
        return PARTS
    chosen = [p.strip() for p in parts.split(",")] if isinstance(parts, str) else [str(p).strip() for p in parts]
    chosen = [p for p in chosen if p]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        raise DataError(f"lapgyn4: unknown part(s) {unknown or chosen!r}. Valid parts: {', '.join(PARTS)}.")
    return tuple(dict.fromkeys(chosen))  # keep the user's order, drop repeats


@register_dataset("lapgyn4", card=CARD)
def lapgyn4(root: Path | None, *, parts: str | list[str] | None = None) -> Task:
    """LapGyn4 v1.2 parts as one multiclass task with `<part>/<class>` class names."""
    chosen = parse_parts(parts)
    base = locate_release(
        root,
        name="lapgyn4",
        holds=lambda folder: any((folder / p).is_dir() for p in PARTS),
        folder_names=("LapGyn4_v1.2",),
        expect="<part>/<class>/*.jpg",
    )
    missing = [p for p in chosen if not (base / p).is_dir()]
    if missing:
        raise DataError(
            f"lapgyn4: part folder(s) {', '.join(missing)} missing under {base}. Fix: extract the complete "
            f"LapGyn4_v1.2 release there, or choose parts from those present with parts=..."
        )
    frames, class_names = [], []
    for part in chosen:
        warn_stray_files(base / part, name=f"lapgyn4/{part}")
        sub = scan_class_folders(base / part, name=f"lapgyn4/{part}")
        offset = len(class_names)
        class_names += [f"{part}/{c}" for c in sub.meta.class_names]
        frames.append(
            pd.DataFrame({"item": [f"{part}/{i}" for i in sub.index["item"]], "label": sub.index["label"] + offset})
        )
    frame = pd.concat(frames, ignore_index=True)
    name = "lapgyn4" if chosen == PARTS else f"lapgyn4:{'+'.join(chosen)}"
    kind = "binary" if len(class_names) == 2 else "multiclass"
    return Task(TaskMeta(name, tuple(class_names), kind), make_index(frame["item"], frame["label"]), FileStore(base))
