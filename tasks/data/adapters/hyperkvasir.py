"""HyperKvasir labeled images (23 classes, 10,662 JPEGs) with its official 2- and 5-fold splits.

    <root>/labeled-images/<gi-tract part>/<findings type>/<class folder>/<uuid>.jpg
        e.g. labeled-images/lower-gi-tract/pathological-findings/polyps/0a2f...jpg
    <root>/official_splits/2_fold_split.csv    file-name;class-name;split-index
    <root>/official_splits/5_fold_split.csv    (split-index is the fold, 0..k-1)

`--data-root` is the folder holding `labeled-images/` (or `labeled-images/` itself). The split CSVs
come from the HyperKvasir GitHub repository (`official_splits/`); they are looked for in
`official_splits/` or `splits/` next to `labeled-images/`, beside it, or in the `splits_dir` option.

Labels and class names come from the CSV, whose spellings differ from the folder names
(`polyp` vs `polyps/`, `hemorroids` vs `hemorrhoids/`, `normal-cecum` vs `cecum/`,
`oesophagitis-a` vs `esophagitis-a/`, `short-segment-barretts` vs `barretts-short-segment/`, ...).
Files are matched by name (a UUID), and each file's folder must be the one `RELEASE_FOLDERS`
gives for its CSV class, so a moved file is reported instead of trained on with a wrong label.
Without any CSV the folders give the labels, renamed to the CSV spellings.

Option `official_folds=2|5` puts the official fold of every image in an `official_fold` int column
(`split` stays ""): `official_fold_assignment(task)` returns it so fold-k cells use the publisher's
folds instead of our own k-fold.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data.adapters._release import image_files, locate_release
from tasks.data.cards import DatasetCard, Published, RemoteFile, Source
from tasks.data.errors import DataError
from tasks.data.images import FileStore
from tasks.data.index import Task, TaskMeta, make_index
from tasks.data.registry import register_dataset

# CSV class name -> folder under labeled-images/ in the release.
RELEASE_FOLDERS = {
    "barretts": "upper-gi-tract/pathological-findings/barretts",
    "bbps-0-1": "lower-gi-tract/quality-of-mucosal-views/bbps-0-1",
    "bbps-2-3": "lower-gi-tract/quality-of-mucosal-views/bbps-2-3",
    "dyed-lifted-polyps": "lower-gi-tract/therapeutic-interventions/dyed-lifted-polyps",
    "dyed-resection-margins": "lower-gi-tract/therapeutic-interventions/dyed-resection-margins",
    "hemorroids": "lower-gi-tract/pathological-findings/hemorrhoids",
    "ileum": "lower-gi-tract/anatomical-landmarks/ileum",
    "impacted-stool": "lower-gi-tract/quality-of-mucosal-views/impacted-stool",
    "normal-cecum": "lower-gi-tract/anatomical-landmarks/cecum",
    "normal-pylorus": "upper-gi-tract/anatomical-landmarks/pylorus",
    "normal-z-line": "upper-gi-tract/anatomical-landmarks/z-line",
    "oesophagitis-a": "upper-gi-tract/pathological-findings/esophagitis-a",
    "oesophagitis-b-d": "upper-gi-tract/pathological-findings/esophagitis-b-d",
    "polyp": "lower-gi-tract/pathological-findings/polyps",
    "retroflex-rectum": "lower-gi-tract/anatomical-landmarks/retroflex-rectum",
    "retroflex-stomach": "upper-gi-tract/anatomical-landmarks/retroflex-stomach",
    "short-segment-barretts": "upper-gi-tract/pathological-findings/barretts-short-segment",
    "ulcerative-colitis-grade-0-1": "lower-gi-tract/pathological-findings/ulcerative-colitis-grade-0-1",
    "ulcerative-colitis-grade-1": "lower-gi-tract/pathological-findings/ulcerative-colitis-grade-1",
    "ulcerative-colitis-grade-1-2": "lower-gi-tract/pathological-findings/ulcerative-colitis-grade-1-2",
    "ulcerative-colitis-grade-2": "lower-gi-tract/pathological-findings/ulcerative-colitis-grade-2",
    "ulcerative-colitis-grade-2-3": "lower-gi-tract/pathological-findings/ulcerative-colitis-grade-2-3",
    "ulcerative-colitis-grade-3": "lower-gi-tract/pathological-findings/ulcerative-colitis-grade-3",
}
FOLDER_CLASSES = {folder: cls for cls, folder in RELEASE_FOLDERS.items()}
SIMULA = "https://datasets.simula.no/downloads"
HYPERKVASIR_SPLITS = "https://raw.githubusercontent.com/simula/hyper-kvasir/master/official_splits"
CARD = DatasetCard(
    summary="HyperKvasir labeled images (Borgli et al. 2020): 23 GI-tract classes, 10,662 JPEGs",
    layout="`labeled-images/<part>/<findings>/<class>/*.jpg` + `official_splits/{2,5}_fold_split.csv` "
           "(`file-name;class-name;split-index`); option `official_folds=2|5`",
    split="official folds, else k-fold",
    source=Source(
        folder="labeled-images",
        files=(
            RemoteFile(f"{SIMULA}/hyper-kvasir/hyper-kvasir-labeled-images.zip"),
            # The official 2- and 5-fold splits live in the GitHub repository, not in the zip.
            *(RemoteFile(f"{HYPERKVASIR_SPLITS}/{k}_fold_split.csv", archive="none",
                         path=f"official_splits/{k}_fold_split.csv", optional=True) for k in (2, 5)),
        ),
        page="https://datasets.simula.no/hyper-kvasir/",
        layout="labeled-images/{lower,upper}-gi-tract/<category>/<class>/*.jpg (23 classes, 10,662 images) "
               "+ official_splits/{2,5}_fold_split.csv",
        licence="CC BY 4.0; cite Borgli et al. 2020"),
    published=Published(10662, 23, min_per_class=6, max_per_class=1148),
    settings=("splits_dir",),
)
OFFICIAL_FOLD_COLUMN = "official_fold"
CSV_COLUMNS = ["file-name", "class-name", "split-index"]
GI_PARTS = ("lower-gi-tract", "upper-gi-tract")


def _labeled_images(root: Path | None) -> Path:
    return locate_release(
        root,
        name="hyperkvasir",
        holds=lambda folder: any((folder / part).is_dir() for part in GI_PARTS),
        folder_names=("labeled-images", "hyper-kvasir/labeled-images"),
        expect="<gi-tract part>/<findings type>/<class>/*.jpg",
    )


def _find_split_csv(labeled: Path, root: Path, folds: int, splits_dir: Path | None) -> Path | None:
    name = f"{folds}_fold_split.csv"
    if splits_dir is not None:
        path = Path(splits_dir) / name
        if not path.is_file():
            raise DataError(f"hyperkvasir: {path} does not exist; splits_dir must hold {name} (from the HyperKvasir repo).")
        return path
    parents = dict.fromkeys([labeled.parent, root, labeled])  # ordered, without repeats
    for folder in parents:
        for sub in ("official_splits", "splits", ""):
            if (folder / sub / name).is_file():
                return folder / sub / name
    return None


def read_split_csv(path: Path, folds: int | None = None) -> pd.DataFrame:
    """The official split CSV as a frame with columns file-name, class-name, split-index (int)."""
    try:
        frame = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"hyperkvasir: {path} is not a ';'-separated CSV ({exc}). Re-download it.") from exc
    if list(frame.columns) != CSV_COLUMNS:
        raise DataError(
            f"hyperkvasir: {path} has columns {list(frame.columns)}; expected {';'.join(CSV_COLUMNS)} "
            "(the official_splits CSV of the HyperKvasir repository)."
        )
    fold = pd.to_numeric(frame["split-index"], errors="coerce")
    bad = fold.isna() | (fold < 0) | (fold % 1 != 0)
    if folds is not None:
        bad |= fold >= folds
    if bad.any():
        lines = [f"line {i + 2}: {frame['split-index'].iloc[i]!r}" for i in np.flatnonzero(bad.to_numpy())[:5]]
        raise DataError(
            f"hyperkvasir: {path}: split-index must be a fold number{f' 0..{folds - 1}' if folds else ''}; bad rows: "
            f"{'; '.join(lines)}. Fix: use the unmodified file from the HyperKvasir repository."
        )
    frame["split-index"] = fold.astype(np.int64)
    duplicated = frame["file-name"].duplicated()
    if duplicated.any():
        raise DataError(f"hyperkvasir: {path} lists {frame['file-name'][duplicated].iloc[0]!r} twice; re-download it.")
    return frame


def _files_by_name(labeled: Path) -> dict[str, str]:
    by_name: dict[str, str] = {}
    for path in image_files(labeled):
        rel = str(path.relative_to(labeled))
        if path.name in by_name:
            raise DataError(
                f"hyperkvasir: {path.name} is both at {by_name[path.name]} and {rel} under {labeled}; the official "
                "CSVs match files by name. Fix: delete the copy that is not in the release."
            )
        by_name[path.name] = rel
    return by_name


def _from_csv(csv: Path, frame: pd.DataFrame, labeled: Path) -> pd.DataFrame:
    on_disk = _files_by_name(labeled)
    missing = [(i + 2, f) for i, f in enumerate(frame["file-name"]) if f not in on_disk]
    if missing:
        shown = "; ".join(f"line {line}: {name}" for line, name in missing[:5])
        raise DataError(
            f"hyperkvasir: {len(missing)} image(s) named in {csv} are not under {labeled} ({shown}"
            f"{' ...' if len(missing) > 5 else ''}). Fix: extract the complete hyper-kvasir-labeled-images.zip "
            "there, or point --data-root at the folder that holds labeled-images/."
        )
    frame = frame.assign(item=[on_disk[f] for f in frame["file-name"]])
    unknown = sorted(set(frame["class-name"]) - set(RELEASE_FOLDERS))
    if unknown:
        raise DataError(
            f"hyperkvasir: {csv} names class(es) {', '.join(unknown)} that are not HyperKvasir's 23; "
            "use the unmodified official_splits CSV."
        )
    # The file must sit in its class's release folder: otherwise folder and CSV disagree and one
    # of them would give a wrong label.
    expected_folder = frame["class-name"].map(RELEASE_FOLDERS)
    actual_folder = frame["item"].map(lambda item: str(Path(item).parent.as_posix()))
    moved = frame[expected_folder != actual_folder]
    if len(moved):
        row = moved.iloc[0]
        raise DataError(
            f"hyperkvasir: {len(moved)} image(s) are in a folder other than their class in {csv}, e.g. "
            f"{row['item']} is labelled {row['class-name']!r} (expected under {RELEASE_FOLDERS[row['class-name']]}/). "
            "Fix: restore the release's folder layout."
        )
    extra = len(on_disk) - len(frame)
    if extra:
        warnings.warn(
            f"hyperkvasir: {extra} image(s) under {labeled} are not in {csv} and are left out (no official label).",
            stacklevel=3,
        )
    return frame


def _from_folders(labeled: Path) -> pd.DataFrame:
    rows = []
    for path in image_files(labeled):
        folder = path.parent.relative_to(labeled).as_posix()
        if folder not in FOLDER_CLASSES:
            raise DataError(
                f"hyperkvasir: {path} is in {folder}/, which is not one of the 23 labeled-image class folders; "
                "move it out of labeled-images/."
            )
        rows.append({"item": str(path.relative_to(labeled)), "class-name": FOLDER_CLASSES[folder]})
    if not rows:
        raise DataError(f"hyperkvasir: no .jpg files under {labeled}; extract hyper-kvasir-labeled-images.zip there.")
    return pd.DataFrame(rows)


@register_dataset("hyperkvasir", card=CARD)
def hyperkvasir(root: Path | None, *, official_folds: int | None = None, splits_dir: str | None = None) -> Task:
    """HyperKvasir labeled images; `official_folds=2|5` adds the publisher's fold ids."""
    if official_folds not in (None, 2, 5, "2", "5"):
        raise DataError(f"hyperkvasir: official_folds must be 2, 5 or unset, got {official_folds!r}.")
    folds = int(official_folds) if official_folds is not None else None
    labeled = _labeled_images(root)
    root = Path(root)
    splits_dir = Path(splits_dir) if splits_dir else None
    if folds is not None:
        csv = _find_split_csv(labeled, root, folds, splits_dir)
        if csv is None:
            raise DataError(
                f"hyperkvasir: {folds}_fold_split.csv not found in {labeled.parent}/official_splits/ or beside "
                f"{labeled}. Fix: copy official_splits/ from https://github.com/simula/hyper-kvasir there, or pass "
                "splits_dir=<folder holding it>."
            )
    else:
        # Any official CSV carries the labels; prefer it to the folders when present.
        csv = _find_split_csv(labeled, root, 5, splits_dir) or _find_split_csv(labeled, root, 2, splits_dir)
    frame = _from_csv(csv, read_split_csv(csv, folds), labeled) if csv else _from_folders(labeled)
    class_names = tuple(sorted(frame["class-name"].unique()))
    labels = frame["class-name"].map({c: i for i, c in enumerate(class_names)})
    index = make_index(frame["item"], labels)
    if folds is not None:
        index[OFFICIAL_FOLD_COLUMN] = frame["split-index"].to_numpy(dtype=np.int64)
    name = "hyperkvasir" if folds is None else f"hyperkvasir:{folds}fold"
    return Task(TaskMeta(name, class_names, "multiclass"), index, FileStore(labeled))


def official_fold_assignment(task: Task) -> np.ndarray | None:
    """The publisher's fold id (0..k-1) of every index row, or None when the task has no official folds.

    k is `folds.max() + 1`; a fold-f cell of a k-fold run tests on rows where the result == f.
    """
    if OFFICIAL_FOLD_COLUMN not in task.index.columns:
        return None
    return task.index[OFFICIAL_FOLD_COLUMN].to_numpy(dtype=np.int64).copy()
