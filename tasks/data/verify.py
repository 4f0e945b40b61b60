"""Is a dataset on disk complete and readable? Decode every image, find duplicates, compare counts.

    medtl data verify kvasir-v2 --root ~/data/kvasir-dataset-v2
    python -m benchmark.data_cli verify medmnist --root ../shared/data/breastmnist/breastmnist.npz

Errors (fail `ok`): the adapter cannot index the folder, an image does not decode, counts differ
from the published ones. Warnings (reported, `ok` stays true): identical images, which real
releases do contain (BreastMNIST has one train image that is also in test); a benchmark refuses the
ones across classes or splits unless the dataset option `allow_duplicates` is set (tasks.data.duplicates). Notes: facts worth
knowing that are not faults, e.g. a MedMNIST file whose MD5 is not the official one although its
contents are complete (a re-saved copy).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from rich.console import Console
from rich.progress import track

from tasks.data.checks import task_problems
from tasks.data.duplicates import ALLOW_OPTION, array_digest, file_digest
from tasks.data.errors import DataError, ImageReadError, UnknownDatasetError
from tasks.data.images import ArrayStore, FileStore, read_image
from tasks.data.index import Task
from tasks.data.cards import Published
from tasks.data.registry import dataset_card, load_task


class Finding(NamedTuple):
    """One thing wrong with the data: which file, what, and how to fix it."""

    file: str
    problem: str
    fix: str
    severity: str = "error"  # "error" fails verification; "warning" is only reported


SHOWN = 25  # findings of each kind printed by to_text


@dataclass
class VerifyReport:
    name: str  # the task's name as the adapter gives it
    root: str  # what was checked
    problems: list[Finding] = field(default_factory=list)  # errors and warnings, in the order found
    notes: list[str] = field(default_factory=list)  # informational, never a failure
    counts: dict[str, int] = field(default_factory=dict)  # images per class name
    split_counts: dict[str, int] = field(default_factory=dict)  # images per official split
    checked: int = 0  # images decoded (files) or checked (arrays)

    @property
    def errors(self) -> list[Finding]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_text(self) -> str:
        lines = [f"verify {self.name} ({self.root}): {self.checked} images checked"]
        if self.split_counts:
            lines.append("  splits: " + ", ".join(f"{s} {n}" for s, n in self.split_counts.items()))
        if self.counts:
            lines.append("  classes: " + ", ".join(f"{c} {n}" for c, n in self.counts.items()))
        for kind, items in (("ERROR", self.errors), ("WARNING", self.warnings)):
            for f in items[:SHOWN]:
                lines.append(f"  {kind} {f.file}: {f.problem}" + (f"\n      fix: {f.fix}" if f.fix else ""))
            if len(items) > SHOWN:  # all of them stay in `problems`
                lines.append(f"  ... and {len(items) - SHOWN} more {kind.lower()}s")
        lines += [f"  note: {n}" for n in self.notes]
        verdict = "OK" if self.ok else f"FAILED ({len(self.errors)} error(s))"
        lines.append(f"{verdict}, {len(self.warnings)} warning(s)")
        return "\n".join(lines)


def verify(name: str, root: Path | str | None, *, workers: int | None = None, progress: bool | None = None,
           **options) -> VerifyReport:
    """Check dataset `name` under `root` (adapter `options` as for `load_task`); never raises DataError
    for bad data, only UnknownDatasetError for a name that is not registered."""
    report = VerifyReport(name, str(root))
    try:
        task = load_task(name, root, **options)
    except UnknownDatasetError:
        raise
    except ImageReadError as exc:
        report.problems.append(Finding(exc.path, exc.problem, exc.fix))
        return report
    except DataError as exc:  # the message already says where and how to fix it
        report.problems.append(Finding(str(root), str(exc), ""))
        return report
    report.name = task.meta.name
    for problem, fix in task_problems(task):
        report.problems.append(Finding(str(root), problem, fix))
    report.counts = _class_counts(task)
    if task.has_official_split:
        report.split_counts = {str(s): int(n) for s, n in task.index["split"].value_counts(sort=False).items()}
    show = Console(stderr=True).is_terminal if progress is None else progress
    if isinstance(task.images, ArrayStore):
        digests = _check_arrays(task, report, show)
    else:
        digests = _check_files(task, report, workers or os.cpu_count() or 1, show)
    _report_duplicates(task, digests, report)
    _compare_counts(name, task, report)
    return report


def _class_counts(task: Task) -> dict[str, int]:
    column = task.index["labels"].explode().dropna() if task.meta.kind == "multilabel" else task.index["label"]
    counts = column.astype(int).value_counts()
    return {cls: int(counts.get(i, 0)) for i, cls in enumerate(task.meta.class_names)}


def _check_files(task: Task, report: VerifyReport, workers: int, show: bool) -> dict[object, bytes]:
    """Decode every image (threads: PIL releases the GIL while decoding); digest their bytes."""
    store = task.images
    items = list(dict.fromkeys(task.index["item"]))

    def check(item) -> tuple[object, str | None, Finding | None]:
        try:
            if isinstance(store, FileStore):
                path = store.root / str(item)
                digest = file_digest(path) if path.is_file() else None
                read_image(path)
            else:  # other stores (video frames...): what the DataModule would see
                digest = array_digest(store.load(item))
            return item, digest, None
        except ImageReadError as exc:
            return item, None, Finding(exc.path, exc.problem, exc.fix)
        except (DataError, OSError) as exc:
            return item, None, Finding(str(item), str(exc), "re-download or re-extract the dataset")

    digests: dict[object, bytes] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(check, items)
        for item, digest, finding in track(results, total=len(items), description="decoding", disable=not show,
                                           console=Console(stderr=True)):
            report.checked += 1
            if finding is not None:
                report.problems.append(finding)
            if digest is not None:
                digests[item] = digest
    return digests


def _check_arrays(task: Task, report: VerifyReport, show: bool) -> dict[object, bytes]:
    """In-memory arrays cannot be truncated files: check dtype, shape and range, digest each image."""
    array, where = task.images.array, task.images.origin
    shape_ok = array.ndim == 3 or (array.ndim == 4 and array.shape[-1] in (1, 3))
    if array.dtype != np.uint8 or not shape_ok:
        report.problems.append(Finding(
            where, f"images are {array.dtype} of shape {array.shape}; expected uint8 (N, H, W) or (N, H, W, 1|3)",
            "re-download the file; a converted copy must keep uint8 pixels"))
        return {}
    items = task.index["item"].to_numpy(dtype=np.int64)
    if items.max() >= len(array):
        report.problems.append(Finding(where, f"index refers to image {items.max()} of {len(array)}",
                                       "re-download the file; its label and image arrays differ in length"))
        return {}
    digests = {}
    for item in track(items, description="hashing", disable=not show, console=Console(stderr=True)):
        digests[int(item)] = array_digest(array[item])
        report.checked += 1
    _medmnist_md5_note(task, report)
    return digests


def _report_duplicates(task: Task, digests: dict[object, bytes], report: VerifyReport) -> None:
    by_digest: dict[bytes, list] = defaultdict(list)
    for item, digest in digests.items():
        by_digest[digest].append(item)
    rows = task.index.drop_duplicates("item").set_index("item")
    for items in (group for group in by_digest.values() if len(group) > 1):
        splits = sorted({rows.at[i, "split"] for i in items} - {""})
        label_col = "labels" if task.meta.kind == "multilabel" else "label"
        labels = {str(rows.at[i, label_col]) for i in items}
        names = ", ".join(f"{i} ({rows.at[i, 'split']})" if splits else str(i) for i in items)
        why = [f"{len(items)} identical images"]
        if len(splits) > 1:
            why.append(f"in splits {'/'.join(splits)}: the same image is trained and evaluated on")
        if len(labels) > 1:
            why.append("with different labels")
        report.problems.append(Finding(
            names, ", ".join(why),
            "delete all but one copy if it is a copying mistake; if the publisher's release has it, keep it "
            "and expect slightly optimistic scores (`medtl benchmark` refuses copies across classes or splits "
            f"unless the dataset option {ALLOW_OPTION}: true is set)", severity="warning"))


def _compare_counts(name: str, task: Task, report: VerifyReport) -> None:
    published = _published(name, task, report)
    if published is None:
        return
    before = len(report.problems)
    fix = "the download or unpacking is incomplete or mixed with other files: download it again"

    def differs(what: str, seen, published_value) -> None:
        report.problems.append(Finding(report.root, f"{what}: {seen}, published {published_value}", fix))

    if len(task.meta.class_names) != published.classes:
        differs("classes", len(task.meta.class_names), published.classes)
    if len(task.index) != published.total:
        differs("images", len(task.index), published.total)
    off = {c: n for c, n in report.counts.items() if n != published.per_class}
    if published.per_class is not None and off:
        differs("classes not of the published size", off, published.per_class)
    smallest, largest = min(report.counts.values()), max(report.counts.values())
    if published.min_per_class is not None and smallest != published.min_per_class:
        differs("images in the smallest class", smallest, published.min_per_class)
    if published.max_per_class is not None and largest != published.max_per_class:
        differs("images in the largest class", largest, published.max_per_class)
    if published.splits and report.split_counts not in published.splits:
        differs("split sizes", report.split_counts, " or ".join(str(s) for s in published.splits))
    if len(report.problems) == before:
        splits = f" ({', '.join(f'{s} {n}' for s, n in report.split_counts.items())})" if published.splits else ""
        report.notes.append(f"counts match the published ones: {published.total} images{splits}, "
                            f"{published.classes} classes")


def _published(name: str, task: Task, report: VerifyReport) -> Published | None:
    card = dataset_card(name)
    published = card.published or (card.published_for(task) if card.published_for else None)
    if published is None:
        report.notes.append(f"no published counts for {task.meta.name}; counts not compared")
    return published


def _medmnist_md5_note(task: Task, report: VerifyReport) -> None:
    """The MD5 only proves byte identity; a re-saved file with the same arrays is fine, so: a note."""
    path = Path(getattr(task.images, "origin", ""))
    from tasks.data.adapters.medmnist import medmnist_info, official_file

    official = official_file(task) if path.is_file() else None
    if official is None:
        return

    expected = medmnist_info()[official[0]].get(official[1])
    actual = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    if expected and actual != expected:
        report.notes.append(f"{path.name} md5 {actual} is not the official {expected}: not the byte-identical "
                            "release file (e.g. re-saved); its contents were checked instead")
    elif expected:
        report.notes.append(f"{path.name} md5 matches the official release")
