"""ImageCLEF 2019 Caption, concept detection: multi-label UMLS concepts (CUIs) per radiology image.

    <root>/train/<image_id>.jpg            (folder also accepted as training/)
    <root>/val/<image_id>.jpg              (or valid/, validation/)
    <root>/test/<image_id>.jpg             (optional; only read when a test CSV exists)
    <root>/*concept*train*.csv             one image per line: <image_id><TAB>C0001;C0002;...
    <root>/*concept*val*.csv               e.g. ImageCLEFmedical_Caption_2019_concepts_val.csv
    <root>/*concept*test*.csv              (optional)
    <root>/concepts.csv                    (optional) <CUI><TAB><concept name>

Options: `train_csv`, `val_csv`, `test_csv`, `concepts_csv` (file names relative to the root, or
absolute) replace the globbing. `<image_id>` may carry its `.jpg` or not; a first line whose
concepts are not CUIs is taken as a header. Split: the training CSV is "train"; the validation CSV
is "test" when there is no test CSV (the 2019 test labels were withheld, so papers report on the
validation set and carve their own validation rows from train), else "val".

Label filters of Sinha et al.: `min_count=N` keeps concepts with at least N training images,
`top_k=K` keeps the K most frequent (ties broken by CUI); both together apply min_count first.
Images left with no concept are dropped with a warning giving the count. Class ids follow sorted
CUIs; a class is named `<CUI> (<name>)` when concepts.csv names it.
"""

from __future__ import annotations

import csv as csvlib
import re
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd

from tasks.data.adapters._release import IMAGE_SUFFIXES
from tasks.data.cards import DatasetCard, Source
from tasks.data.errors import DataError
from tasks.data.images import FileStore
from tasks.data.index import Task, TaskMeta, make_index
from tasks.data.registry import register_dataset

CUI = re.compile(r"^C\d+$")
IMAGE_FOLDERS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
NAME = "imageclef-concepts"


def _find_csv(root: Path, option: str | None, split: str, required: bool) -> Path | None:
    if option:
        path = Path(option) if Path(option).is_absolute() else root / option
        if not path.is_file():
            raise DataError(f"{NAME}: {split}_csv {path} does not exist; pass an existing file.")
        return path
    found = sorted(
        p for p in root.iterdir()
        if p.is_file() and p.suffix.lower() in (".csv", ".txt") and "concept" in p.name.lower() and split in p.name.lower()
    )
    if len(found) > 1:
        raise DataError(
            f"{NAME}: several {split} concept files in {root}: {', '.join(p.name for p in found)}; "
            f"choose one with {split}_csv=<file>."
        )
    if not found and required:
        raise DataError(
            f"{NAME}: no *concept*{split}*.csv in {root}. Fix: put the release's {split} concepts file there "
            f"or pass {split}_csv=<file>."
        )
    return found[0] if found else None


def read_concepts_csv(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line number, image id, CUIs) per non-empty line of a concept-detection file."""
    try:
        frame = pd.read_csv(
            path, sep="\t", header=None, dtype=str, keep_default_na=False, quoting=csvlib.QUOTE_NONE,
            skip_blank_lines=False, engine="python",
        )
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{NAME}: {path} is malformed ({exc}). Fix: each line must be <image_id><TAB><CUI>;<CUI>;..."
        ) from exc
    if frame.shape[1] != 2:
        raise DataError(
            f"{NAME}: {path} has {frame.shape[1]} tab-separated column(s); expected 2: <image_id><TAB><CUI>;<CUI>;..."
        )
    frame = frame.fillna("")  # blank lines and a missing second field arrive as NaN even without NA parsing
    rows = []
    for position, (image_id, concepts) in enumerate(frame.itertuples(index=False, name=None)):
        line = position + 1
        image_id, concepts = str(image_id).strip(), str(concepts).strip()
        if not image_id and not concepts:
            continue  # blank line, e.g. at the end of the file
        tokens = [t.strip() for t in concepts.split(";") if t.strip()]
        bad = [t for t in tokens if not CUI.match(t)]
        if position == 0 and tokens and len(bad) == len(tokens):
            continue  # a header such as "image_id<TAB>concepts"
        if not image_id or not tokens or bad:
            problem = "no image id" if not image_id else "no concepts" if not tokens else f"not a CUI: {bad[0]!r}"
            raise DataError(
                f"{NAME}: {path} line {line}: {problem}. Fix: each line must be <image_id><TAB>C<digits>;C<digits>;..."
            )
        rows.append((line, image_id, tuple(dict.fromkeys(tokens))))
    if not rows:
        raise DataError(f"{NAME}: {path} holds no image lines.")
    return rows


def _image_folder(root: Path, split: str) -> Path:
    by_name = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for name in IMAGE_FOLDERS[split]:
        if name in by_name:
            return by_name[name]
    raise DataError(
        f"{NAME}: no {split} image folder in {root} (looked for {', '.join(IMAGE_FOLDERS[split])}). "
        f"Fix: extract the {split} images to {root}/{IMAGE_FOLDERS[split][0]}/."
    )


def _concept_names(root: Path, option: str | None) -> dict[str, str]:
    path = (Path(option) if Path(option).is_absolute() else root / option) if option else root / "concepts.csv"
    if not path.is_file():
        if option:
            raise DataError(f"{NAME}: concepts_csv {path} does not exist.")
        return {}
    frame = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False, quoting=csvlib.QUOTE_NONE)
    if frame.shape[1] < 2:
        raise DataError(f"{NAME}: {path} must be <CUI><TAB><name> per line; it has {frame.shape[1]} column(s).")
    return {cui.strip(): name.strip() for cui, name in zip(frame[0], frame[1]) if CUI.match(cui.strip())}


def _keep_concepts(train_counts: Counter, min_count: int | None, top_k: int | None) -> set[str]:
    ranked = sorted(train_counts, key=lambda c: (-train_counts[c], c))
    if min_count is not None:
        ranked = [c for c in ranked if train_counts[c] >= int(min_count)]
    if top_k is not None:
        ranked = ranked[: int(top_k)]
    return set(ranked)


CARD = DatasetCard(
    summary="ImageCLEF 2019 concept detection (Sinha et al.): multi-label UMLS concepts of radiology images",
    layout="`{train,val}/<image_id>.jpg` + `*concept*train*.csv` / `*concept*val*.csv` (`<id>\\t C1;C2`); options "
           "`min_count`, `top_k` (Sinha et al.'s filters)",
    split="train / val",
    source=Source(
        folder="ImageCLEF2019-caption", page="https://www.imageclef.org/2019/medical/caption",
        manual=("Register for ImageCLEF 2019 Caption (concept detection) and sign the end-user agreement; "
                "the organisers then send the download links. Unzip the images and the concept CSVs under the root."),
        layout="ImageCLEF2019-caption/{train,val}/<image_id>.jpg + *concept*{train,val}*.csv "
               "(<image_id><TAB>CUI;CUI;...) [+ concepts.csv]",
        licence="ImageCLEF end-user agreement (research only, no redistribution)"),
)


@register_dataset(NAME, card=CARD)
def imageclef_concepts(
    root: Path | None,
    *,
    train_csv: str | None = None,
    val_csv: str | None = None,
    test_csv: str | None = None,
    concepts_csv: str | None = None,
    min_count: int | None = None,
    top_k: int | None = None,
) -> Task:
    """ImageCLEF 2019 concept detection as a multilabel task, optionally filtered to frequent concepts."""
    if root is None or not Path(root).is_dir():
        raise DataError(f"{NAME}: dataset root {root} is not a folder; pass --data-root holding train/, val/ and the CSVs.")
    root = Path(root)
    csvs = {
        "train": _find_csv(root, train_csv, "train", required=True),
        "val": _find_csv(root, val_csv, "val", required=True),
        "test": _find_csv(root, test_csv, "test", required=False),
    }
    split_names = {"train": "train", "val": "val" if csvs["test"] else "test", "test": "test"}
    records = []  # (split, item, concepts)
    for split, path in csvs.items():
        if path is None:
            continue
        folder = _image_folder(root, split)
        missing, seen = [], set()
        for line, image_id, concepts in read_concepts_csv(path):
            if image_id in seen:
                raise DataError(f"{NAME}: {path} line {line}: image {image_id!r} is listed twice; keep one line.")
            seen.add(image_id)
            file = folder / (image_id if Path(image_id).suffix.lower() in IMAGE_SUFFIXES else f"{image_id}.jpg")
            if not file.is_file():
                missing.append(f"line {line}: {file.name}")
                continue
            records.append((split_names[split], file.relative_to(root).as_posix(), concepts))
        if missing:
            raise DataError(
                f"{NAME}: {len(missing)} image(s) named in {path} are not in {folder} ({'; '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''}). Fix: extract the complete {split} images there."
            )
    counts = Counter(c for split, _, concepts in records if split == "train" for c in concepts)
    keep = _keep_concepts(counts, min_count, top_k)
    cuis = sorted(keep)
    ids = {c: i for i, c in enumerate(cuis)}
    kept = [(s, item, tuple(sorted(ids[c] for c in concepts if c in ids))) for s, item, concepts in records]
    dropped = Counter(s for s, _, labels in kept if not labels)
    if dropped:
        warnings.warn(
            f"{NAME}: dropped {sum(dropped.values())} image(s) left without a concept by the label filter "
            f"(min_count={min_count}, top_k={top_k}): "
            + ", ".join(f"{n} {s}" for s, n in sorted(dropped.items())),
            stacklevel=2,
        )
    kept = [row for row in kept if row[2]]
    if not kept:
        raise DataError(f"{NAME}: no image keeps a concept with min_count={min_count}, top_k={top_k}; loosen the filter.")
    names = _concept_names(root, concepts_csv)
    class_names = tuple(f"{c} ({names[c]})" if c in names else c for c in cuis)
    index = make_index([item for _, item, _ in kept], [0] * len(kept), splits=[s for s, _, _ in kept]).drop(columns="label")
    index["labels"] = [labels for _, _, labels in kept]
    suffix = "".join(
        f":{label}{value}" for label, value in (("min", min_count), ("top", top_k)) if value is not None
    )
    return Task(TaskMeta(NAME + suffix, class_names, "multilabel"), index, FileStore(root))
