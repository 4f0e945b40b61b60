"""Kvasir v1, Kvasir v2 and the Medico 2018 development set: class folders of endoscopy JPEGs.

    kvasir-v1   kvasir-dataset/<class>/*.jpg                 8 classes x 500  = 4,000 images
    kvasir-v2   kvasir-dataset-v2/<class>/*.jpg              8 classes x 1,000 = 8,000 images
    medico2018  Medico_2018_development_set/<class>/*.jpg   16 classes, 5,293 images (4 to 613 per class)

Kvasir classes: dyed-lifted-polyps, dyed-resection-margins, esophagitis, normal-cecum,
normal-pylorus, normal-z-line, polyps, ulcerative-colitis. Medico 2018 adds blurry-nothing,
colon-clear, instruments, out-of-patient, retroflex-rectum, retroflex-stomach, stool-inclusions,
stool-plenty. `--data-root` is the extracted folder itself or the folder it was extracted into.
None of them has an official split: cells use stratified k-fold. The class folders must be
exactly the publisher's (a missing or extra folder would shift label ids); image counts are not
enforced here, `PUBLISHED` holds them for `medtl data verify`.
"""

from __future__ import annotations

from pathlib import Path

from tasks.adapters.folders import scan_class_folders
from tasks.adapters.release import check_class_folders, locate_release, subfolders, warn_stray_files
from tasks.index import Task
from tasks.registry import register_dataset

KVASIR_CLASSES = (
    "dyed-lifted-polyps",
    "dyed-resection-margins",
    "esophagitis",
    "normal-cecum",
    "normal-pylorus",
    "normal-z-line",
    "polyps",
    "ulcerative-colitis",
)
MEDICO2018_CLASSES = tuple(
    sorted(
        KVASIR_CLASSES
        + (
            "blurry-nothing",
            "colon-clear",
            "instruments",
            "out-of-patient",
            "retroflex-rectum",
            "retroflex-stomach",
            "stool-inclusions",
            "stool-plenty",
        )
    )
)

# Published sizes (Pogorelov et al. 2017 for Kvasir; the Medico 2018 task overview for Medico).
# per_class is None where classes are unbalanced; min/max_per_class bound them instead.
PUBLISHED = {
    "kvasir-v1": {"classes": 8, "images": 4000, "per_class": 500, "folder": "kvasir-dataset"},
    "kvasir-v2": {"classes": 8, "images": 8000, "per_class": 1000, "folder": "kvasir-dataset-v2"},
    "medico2018": {
        "classes": 16,
        "images": 5293,
        "per_class": None,
        "min_per_class": 4,
        "max_per_class": 613,
        "folder": "Medico_2018_development_set",
    },
}
EXPECTED_COUNTS = {name: entry["images"] for name, entry in PUBLISHED.items()}  # total images per dataset
CLASSES = {"kvasir-v1": KVASIR_CLASSES, "kvasir-v2": KVASIR_CLASSES, "medico2018": MEDICO2018_CLASSES}


def _scan_release(root: Path | None, name: str) -> Task:
    classes = CLASSES[name]

    def holds(folder: Path) -> bool:
        # Half the class names present is enough to recognise the release folder; the exact class
        # check below then says precisely what is missing or extra.
        return len({p.name for p in subfolders(folder)} & set(classes)) >= len(classes) // 2

    folder = locate_release(
        root, name=name, holds=holds, folder_names=(PUBLISHED[name]["folder"],), expect="<class>/*.jpg"
    )
    check_class_folders((p.name for p in subfolders(folder)), classes, name=name, where=folder)
    warn_stray_files(folder, name=name)
    return scan_class_folders(folder, name=name)


@register_dataset("kvasir-v1")
def kvasir_v1(root: Path | None, **_: object) -> Task:
    """Kvasir v1 (8 classes x 500 JPEGs)."""
    return _scan_release(root, "kvasir-v1")


@register_dataset("kvasir-v2")
def kvasir_v2(root: Path | None, **_: object) -> Task:
    """Kvasir v2 (8 classes x 1,000 JPEGs)."""
    return _scan_release(root, "kvasir-v2")


@register_dataset("medico2018")
def medico2018(root: Path | None, **_: object) -> Task:
    """Medico 2018 development set (16 classes, 5,293 JPEGs)."""
    return _scan_release(root, "medico2018")
