"""Kermany pediatric chest X-ray (Kaggle `chest_xray` release): pneumonia vs normal, patient groups.

    chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg     5,856 grayscale JPEGs

`--data-root` is `chest_xray/` or the folder holding it (the Kaggle zip also nests a duplicate
`chest_xray/chest_xray/` and a `__MACOSX/` folder; only the split folders are read). The split
folder is the official split; the Mendeley release (train and test only) works too.

Group = patient, parsed from the file name, so one patient's images never straddle a fold:
    PNEUMONIA  person<ID>_bacteria_<n>.jpeg, person<ID>_virus_<n>.jpeg    -> "pneumonia:<ID>"
    NORMAL     IM-<ID>-<n>.jpeg, NORMAL2-IM-<ID>-<n>.jpeg                 -> "normal:<ID>"
    Mendeley   NORMAL-<ID>-<n>.jpeg, BACTERIA-<ID>-<n>.jpeg, VIRUS-<ID>-<n>.jpeg
The two classes number patients independently, hence the prefixes. IM- and NORMAL2-IM- share
one id space on purpose: if they are different patients, merging only coarsens the groups; if
they are the same, separating them would leak a patient across folds. A file name that matches
no pattern becomes its own group, with a warning. Grayscale is made 3-channel by `read_image`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from tasks.data.adapters._release import image_files, locate_release, subfolders, warn_stray_files
from tasks.data.cards import DatasetCard, Published, Source
from tasks.data.errors import DataError
from tasks.data.images import FileStore
from tasks.data.index import Task, TaskMeta, make_index
from tasks.data.registry import register_dataset

CLASSES = ("NORMAL", "PNEUMONIA")
SPLITS = ("train", "val", "test")
CARD = DatasetCard(
    summary="Kermany pediatric chest X-ray (Rahman's task): pneumonia vs normal, 5,856 JPEGs",
    layout="`chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`; group = patient id from the file name",
    split="folders",
    source=Source(
        folder="chest_xray", page="https://data.mendeley.com/datasets/rscbjbr9sj/2",
        manual=("Download ChestXRay2017.zip from Mendeley Data (or the Kaggle mirror "
                "https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia, which needs a Kaggle "
                "account) and unzip it under the root."),
        layout="chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg (5,856 images)",
        licence="CC BY 4.0; cite Kermany et al. 2018"),
    # Kermany 2018: the Kaggle release moved 16 train images to val; Mendeley v2 has train/test only.
    published=Published(5856, 2, splits=({"train": 5216, "val": 16, "test": 624}, {"train": 5232, "test": 624})),
)
PATIENT_PATTERNS = (
    (re.compile(r"^person(\d+)_(?:bacteria|virus)_\d+$", re.IGNORECASE), "PNEUMONIA"),
    (re.compile(r"^(?:NORMAL2-)?IM-(\d+)-\d+$", re.IGNORECASE), "NORMAL"),
    (re.compile(r"^NORMAL-(\d+)-\d+$", re.IGNORECASE), "NORMAL"),
    (re.compile(r"^(?:BACTERIA|VIRUS)-(\d+)-\d+$", re.IGNORECASE), "PNEUMONIA"),
)


def patient_group(file_name: str) -> tuple[str, str] | None:
    """(group key, class the name implies) for a Kermany file name, or None when it matches no pattern."""
    stem = Path(file_name).stem
    for pattern, cls in PATIENT_PATTERNS:
        match = pattern.match(stem)
        if match:
            return f"{cls.lower()}:{int(match.group(1))}", cls
    return None


def _holds_splits(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


@register_dataset("chest-xray", card=CARD)
def chest_xray(root: Path | None) -> Task:
    """Kermany chest X-ray with official split folders and patient groups."""
    name = "chest-xray"
    base = locate_release(
        root, name=name, holds=_holds_splits, folder_names=("chest_xray",), expect="{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg"
    )
    items, labels, groups, splits = [], [], [], []
    unparsed, contradicting = [], []
    for split in SPLITS:
        split_dir = base / split
        if not split_dir.is_dir():
            continue  # the Mendeley release has no val folder
        found = {p.name for p in subfolders(split_dir)}
        if found != set(CLASSES):
            raise DataError(
                f"{name}: {split_dir} holds folders {sorted(found)}; expected exactly {list(CLASSES)}. "
                "Fix: re-extract the release there."
            )
        for label, cls in enumerate(CLASSES):
            files = image_files(split_dir / cls)
            if not files:
                raise DataError(f"{name}: {split_dir / cls} holds no images; re-extract the release there.")
            for path in files:
                parsed = patient_group(path.name)
                if parsed is None:
                    unparsed.append(path)
                    group = f"file:{path.relative_to(base).as_posix()}"
                else:
                    group, implied = parsed
                    if implied != cls:
                        contradicting.append(path)
                items.append(path.relative_to(base).as_posix())
                labels.append(label)
                groups.append(group)
                splits.append(split)
        warn_stray_files(split_dir, name=name)
    if unparsed:
        warnings.warn(
            f"{name}: {len(unparsed)} file name(s) carry no patient id (e.g. {unparsed[0]}); each is its own group, "
            "so a patient with such files may straddle folds. Rename them to the release's pattern to fix.",
            stacklevel=2,
        )
    if contradicting:
        warnings.warn(
            f"{name}: {len(contradicting)} file(s) sit in a class folder their name contradicts (e.g. "
            f"{contradicting[0]}); they keep their folder's label. Check they were not moved by hand.",
            stacklevel=2,
        )
    index = make_index(items, labels, groups=groups, splits=splits)
    return Task(TaskMeta(name, CLASSES, "binary"), index, FileStore(base))
