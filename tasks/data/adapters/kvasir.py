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
enforced here: their cards hold them for `medtl data verify`.
"""

from __future__ import annotations

from pathlib import Path

from tasks.data.adapters.folders import scan_class_folders
from tasks.data.adapters._release import check_class_folders, locate_release, subfolders, warn_stray_files
from tasks.data.cards import DatasetCard, Published, RemoteFile, Source
from tasks.data.index import Task
from tasks.data.registry import register_dataset

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

SIMULA = "https://datasets.simula.no/downloads"
FOLDERS = {"kvasir-v1": "kvasir-dataset", "kvasir-v2": "kvasir-dataset-v2", "medico2018": "Medico_2018_development_set"}
KVASIR_LICENCE = "research and educational use; cite Pogorelov et al. 2017"


def _kvasir_source(name: str, per_class: int) -> Source:
    # Simula publishes no checksums for these archives: the first download records its sha256.
    folder = FOLDERS[name]
    return Source(folder=folder, files=(RemoteFile(f"{SIMULA}/kvasir/{folder}.zip"),), page="https://datasets.simula.no/kvasir/",
                  layout=f"{folder}/<class>/*.jpg (8 classes x {per_class:,} images)", licence=KVASIR_LICENCE)


# Published sizes: Pogorelov et al. 2017 for Kvasir; the Medico 2018 task overview for Medico.
CARDS = {
    "kvasir-v1": DatasetCard(
        summary="Kvasir v1 endoscopy: 8 classes x 500 JPEGs", layout="`kvasir-dataset/<8 class folders>/*.jpg`",
        source=_kvasir_source("kvasir-v1", 500), published=Published(4000, 8, per_class=500)),
    "kvasir-v2": DatasetCard(
        summary="Kvasir v2 endoscopy: 8 classes x 1,000 JPEGs", layout="`kvasir-dataset-v2/<8 class folders>/*.jpg`",
        source=_kvasir_source("kvasir-v2", 1000), published=Published(8000, 8, per_class=1000)),
    "medico2018": DatasetCard(
        summary="Medico 2018 development set (Hicks et al.): 16 GI-tract classes, 5,293 JPEGs",
        layout="`Medico_2018_development_set/<16 class folders>/*.jpg`",
        source=Source(
            folder=FOLDERS["medico2018"], page="https://multimediaeval.github.io/2018-Medico-Task/",
            manual="The Medico 2018 development set is distributed by the task organisers: request it through the "
                   "MediaEval 2018 Medico task page and unzip it under the root.",
            layout="Medico_2018_development_set/<class>/*.jpg (16 classes, 5,293 images)",
            licence="MediaEval 2018 participation terms (research only)"),
        published=Published(5293, 16, min_per_class=4, max_per_class=613)),
}
CLASSES = {"kvasir-v1": KVASIR_CLASSES, "kvasir-v2": KVASIR_CLASSES, "medico2018": MEDICO2018_CLASSES}


def _scan_release(root: Path | None, name: str) -> Task:
    classes = CLASSES[name]

    def holds(folder: Path) -> bool:
        # Half the class names present is enough to recognise the release folder; the exact class
        # check below then says precisely what is missing or extra.
        return len({p.name for p in subfolders(folder)} & set(classes)) >= len(classes) // 2

    folder = locate_release(
        root, name=name, holds=holds, folder_names=(FOLDERS[name],), expect="<class>/*.jpg"
    )
    check_class_folders((p.name for p in subfolders(folder)), classes, name=name, where=folder)
    warn_stray_files(folder, name=name)
    return scan_class_folders(folder, name=name)


@register_dataset("kvasir-v1", card=CARDS["kvasir-v1"])
def kvasir_v1(root: Path | None) -> Task:
    """Kvasir v1 (8 classes x 500 JPEGs)."""
    return _scan_release(root, "kvasir-v1")


@register_dataset("kvasir-v2", card=CARDS["kvasir-v2"])
def kvasir_v2(root: Path | None) -> Task:
    """Kvasir v2 (8 classes x 1,000 JPEGs)."""
    return _scan_release(root, "kvasir-v2")


@register_dataset("medico2018", card=CARDS["medico2018"])
def medico2018(root: Path | None) -> Task:
    """Medico 2018 development set (16 classes, 5,293 JPEGs)."""
    return _scan_release(root, "medico2018")
