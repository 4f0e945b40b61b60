"""Generic CSV index: one image per row, for datasets whose labels live in a table.

    <root>/labels.csv          path,label[,group][,split]      single label per image
                        or     path,labels[,group][,split]     labels separated by ';' (multilabel)
    <root>/<path>              image files, `path` relative to the CSV's folder

Options: `csv=<file>` (default `<root>/labels.csv`; `--data-root` may also be the CSV itself) and
`classes` (a list or comma-separated string) fixing the class order; without it classes are sorted
(numerically when every label is an integer, so "10" comes after "9"). `split` values must be
train, val, test or empty. A row naming a missing file, an empty label or, when `classes` is
given, a label not in it, is an error listing the first offending rows by line number; so is a path
listed twice, also when spelt differently (`img/x.jpg`, `./img/x.jpg`, `img//x.jpg` name one image).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tasks.data.cards import DatasetCard
from tasks.data.errors import DataError
from tasks.data.images import FileStore
from tasks.data.index import Task, TaskMeta, item_path, make_index
from tasks.data.registry import register_dataset

SPLITS = {"", "train", "val", "test"}
SHOWN = 5  # offending rows quoted in an error; the count says how many more


def _csv_path(root: Path | None, csv: str | None) -> Path:
    if csv is not None:
        path = Path(csv) if Path(csv).is_absolute() or root is None else Path(root) / csv
    elif root is not None and Path(root).is_file():
        path = Path(root)
    elif root is not None:
        path = Path(root) / "labels.csv"
    else:
        raise DataError("csv: pass --data-root (the folder holding labels.csv) or csv=<file>.")
    if not path.is_file():
        raise DataError(f"csv: label table {path} does not exist; pass csv=<file> or put labels.csv in the data root.")
    return path


def _offending(path: Path, rows: list[tuple[int, str]], problem: str, fix: str) -> DataError:
    shown = "; ".join(f"line {line}: {text}" for line, text in rows[:SHOWN])
    more = f" (and {len(rows) - SHOWN} more)" if len(rows) > SHOWN else ""
    return DataError(f"csv: {path}: {len(rows)} row(s) {problem}: {shown}{more}. Fix: {fix}")


def _parse_classes(classes) -> list[str] | None:
    if classes is None:
        return None
    names = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else [str(c).strip() for c in classes]
    if len(set(names)) != len(names) or "" in names:
        raise DataError(f"csv: classes={classes!r} has empty or repeated names.")
    return names


def _sorted_classes(labels: set[str]) -> list[str]:
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


@register_dataset("csv", card=DatasetCard(
    summary="any image list in a CSV, single- or multi-label",
    layout="`<root>/labels.csv` with `path,label` or `path,labels` (`;`-separated) and optional `group`, `split`; "
           "paths relative to the CSV",
    split="`split` column, else k-fold",
))
def csv_table(root: Path | None, *, csv: str | None = None, classes=None) -> Task:
    """Images listed in a CSV with path and label(s), optional group and split columns."""
    path = _csv_path(root, csv)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"csv: {path} cannot be parsed as CSV ({exc}). Fix: a header line, then one row per image.") from exc
    frame.columns = [c.strip() for c in frame.columns]
    multilabel = "labels" in frame.columns
    label_column = "labels" if multilabel else "label"
    if "path" not in frame.columns or label_column not in frame.columns:
        raise DataError(
            f"csv: {path} has columns {list(frame.columns)}; it needs 'path' and 'label' (or 'labels', ';'-separated), "
            "optionally 'group' and 'split'."
        )
    lines = frame.index.to_numpy() + 2  # line 1 is the header
    folder = path.parent
    frame["path"] = frame["path"].str.strip()
    per_row = [
        tuple(dict.fromkeys(t.strip() for t in value.split(";") if t.strip())) if multilabel else (value.strip(),)
        for value in frame[label_column]
    ]
    empty = [(line, p) for line, p, labels in zip(lines, frame["path"], per_row) if not labels or labels == ("",)]
    if empty:
        raise _offending(path, empty, f"have an empty '{label_column}'", "give every image a label or delete its row")
    missing = [(line, p) for line, p in zip(lines, frame["path"]) if not p or not (folder / p).is_file()]
    if missing:
        raise _offending(
            path, missing, f"name files that do not exist under {folder}",
            "correct the paths (they are relative to the CSV's folder) or delete the rows",
        )
    splits = frame["split"].str.strip().str.lower() if "split" in frame.columns else pd.Series([""] * len(frame))
    bad_split = [(line, s) for line, s in zip(lines, splits) if s not in SPLITS]
    if bad_split:
        raise _offending(path, bad_split, "have a split other than train, val, test or empty", "use one of those")
    if (splits != "").any() and (splits == "").any():
        # With `folds: official` the rows without a split would silently be in no part at all.
        unsplit = [(line, p) for line, p, s in zip(lines, frame["path"], splits) if s == ""]
        raise _offending(path, unsplit, "have an empty 'split' while other rows have one",
                         "give every row train, val or test, or delete the 'split' column to use k-fold splits")
    # `img/x.jpg`, `./img/x.jpg` and `img//x.jpg` name one file: compare the paths as the index will hold them.
    first_line: dict[str, tuple[int, str]] = {}
    dupes = []
    for line, p in zip(lines, frame["path"]):
        key = item_path(p)
        if key in first_line:
            earlier, spelt = first_line[key]
            dupes.append((line, f"{p} (the image of line {earlier}: {spelt})"))
        else:
            first_line[key] = (line, p)
    if dupes:
        raise _offending(path, dupes, "repeat a path listed on an earlier line (it would count twice)",
                         "list each image once (delete the later row); for several labels use a 'labels' column "
                         "separated by ';'")
    wanted = _parse_classes(classes)
    if wanted is not None:
        unknown = [(line, f"{p} -> {l!r}") for line, p, ls in zip(lines, frame["path"], per_row) for l in ls if l not in wanted]
        if unknown:
            raise _offending(
                path, unknown, f"have labels not in classes={wanted}", "add the label to `classes` or correct the row"
            )
    class_names = wanted or _sorted_classes({l for ls in per_row for l in ls})
    ids = {c: i for i, c in enumerate(class_names)}
    groups = frame["group"].str.strip() if "group" in frame.columns else None
    if groups is not None:
        groups = [g or p for g, p in zip(groups, frame["path"])]  # an empty group keeps the image on its own
    name = f"csv:{path.parent.name}/{path.name}"
    if multilabel:
        index = make_index(frame["path"], [0] * len(frame), groups=groups, splits=splits).drop(columns="label")
        index["labels"] = [tuple(sorted(ids[l] for l in ls)) for ls in per_row]
        kind = "multilabel"
    else:
        index = make_index(frame["path"], [ids[ls[0]] for ls in per_row], groups=groups, splits=splits)
        kind = "binary" if len(class_names) == 2 else "multiclass"
    return Task(TaskMeta(name, tuple(class_names), kind), index, FileStore(folder))
