"""Before the first cell trains: load the target and every pretraining source once and check them.

    medtl benchmark my-suite.yaml --data-root ~/data    # a bad layout stops here (exit 2), naming the suite key

A dataset that loads but cannot give a trustworthy result (one class, a class without training
rows, repeated items, names differing only in case: `tasks.data.checks`), an external test set whose
class names are not the target's (`benchmark.cell.external`), a `folds: official` on
a dataset without an official split, or a path that does not exist under `--data-root`, would
otherwise fail (or, worse, finish) cell after cell. Errors name the suite key, the folder it
resolved to, and the `--data-root` that would work when one is found nearby.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from benchmark.cell.external import load_external
from benchmark.cell.route import load_cell_task
from benchmark.plan.checks import positive_class_error
from benchmark.plan.spec import RunSpec
from tasks.data import DataError
from tasks.data.checks import check_task

SEARCH_DEPTH = 3  # folders above --data-root tried when suggesting the one that works


def suite_key(spec: RunSpec) -> str:
    """The suite key a cell's dataset came from."""
    return f"sources.{spec.source}.pretrain" if spec.stage == "pretrain" else "target"


def _suggest_root(data_root: Path | None, data_path: str) -> Path | None:
    """A folder near `data_root` under which `data_path` exists: the --data-root the user probably meant."""
    start = (data_root or Path.cwd()).resolve()
    candidates = [start, *list(start.parents)[:SEARCH_DEPTH]]
    if start.is_dir():
        candidates += sorted(p for p in start.iterdir() if p.is_dir() and not p.name.startswith("."))
    return next((c for c in candidates if (c / data_path).exists()), None)


def _resolve(spec: RunSpec, data_root: Path | None) -> Path | None:
    if not spec.data_path:
        return None
    root = (data_root / spec.data_path) if data_root is not None else Path(spec.data_path)
    if root.exists():
        return root
    key = suite_key(spec)
    given = f"--data-root {data_root}" if data_root is not None else "no --data-root (nor $MEDTL_DATA)"
    found = _suggest_root(data_root, spec.data_path)
    fix = (f"pass --data-root {found} (it holds {spec.data_path})" if found is not None else
           f"pass --data-root as the folder that holds {spec.data_path}, or correct {key}.path")
    raise DataError(f"{key}.path {spec.data_path!r} with {given} is {root}, which does not exist. Fix: {fix}.")


def check_suite_weights(cells: tuple[RunSpec, ...]) -> None:
    """ImageNet weights of `cells` in the library's cache (or downloadable), checked once before the first cell:
    offline without a cached copy, every such cell would fail with the same error. Raises WeightsError, naming
    the suite key, the cache file and the command that fills it. (Not at suite loading: `medtl report` and
    suite validation need no weights.)"""
    from backbones import backbone_entry
    from backbones.errors import WeightsError

    for backbone, source in sorted({(c.backbone, c.source) for c in cells if c.weights == "imagenet"}):
        entry = backbone_entry(backbone)
        if entry.imagenet is not None:
            try:
                entry.imagenet.check(backbone)
            except WeightsError as exc:
                raise WeightsError(f"sources.{source}: {exc}") from exc


def check_suite_data(cells: tuple[RunSpec, ...], data_root: Path | None, cache: OrderedDict | None = None) -> int:
    """Load and check every distinct dataset of `cells` (and their ImageNet weights: `check_suite_weights`);
    raise DataError naming the suite key. Returns how many datasets."""
    check_suite_weights(cells)
    seen: set = set()
    for spec in cells:
        key = (spec.task, spec.data_path, repr(sorted(spec.options.items())), spec.folds == 0, spec.extra_train, spec.external)
        if key in seen:
            continue
        seen.add(key)
        where = suite_key(spec)
        root = _resolve(spec, data_root)
        try:
            task = load_cell_task(spec, data_root, cache)
        except DataError as exc:
            place = f"{where}: {spec.task} at {root}" if root is not None else f"{where}: {spec.task}"
            raise DataError(f"{place}: {exc}") from exc
        check_task(task, where=f"{where}{f', {root}' if root is not None else ''}")
        if spec.folds == 0 and not task.has_official_split:
            raise DataError(f"{where}: folds: official, but {task.meta.name} has no official split. Fix: set "
                            f"{'folds' if where == 'target' else where + '.folds'} to a number of folds (e.g. 5).")
        load_external(spec, task.meta, data_root)  # each external set: its path, its class names against the target's
        if spec.positive_class and (problem := positive_class_error(spec.positive_class, list(task.meta.class_names))):
            raise DataError(f"{where}: {problem}")
    return len(seen)
