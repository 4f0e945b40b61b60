"""Dataset adapters: `@register_dataset(name, card=...)` on a function `(root, **options) -> Task`.

    >>> from tasks.data import load_task
    >>> load_task("gen-target").meta.class_names[:2]
    ('lesion_0deg', 'lesion_45deg')

Adapter options are the function's keyword-only parameters; a name the adapter does not take is
refused with the valid ones, never silently ignored. Every dataset also takes the common options in
`COMMON_OPTIONS`, which `load_task` handles itself: `allow_duplicates` (default false) lets byte-identical
copies across classes or split sides through the pre-benchmark checks and is carried in
`task.meta.allow_duplicates` (tasks.data.duplicates).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from backbones import Registry
from tasks.data.cards import DatasetCard
from tasks.data.errors import DataError, UnknownDatasetError
from tasks.data.index import Task

Adapter = Callable[..., Task]


@dataclass(frozen=True)
class DatasetEntry:
    load: Adapter  # (root, **options) -> Task
    card: DatasetCard  # its facts (layout, download, published counts, licence)


DATASETS: Registry[DatasetEntry] = Registry("dataset", UnknownDatasetError)


def register_dataset(name: str, *, card: DatasetCard):
    def decorate(fn: Adapter) -> Adapter:
        DATASETS.add(name, DatasetEntry(fn, card))
        return fn

    return decorate


def list_datasets() -> list[str]:
    return DATASETS.names()


def dataset_card(name: str) -> DatasetCard:
    return DATASETS.get(name).card


def option_defaults(name: str) -> dict[str, Any]:
    """The adapter's options and their defaults (its keyword-only parameters)."""
    params = inspect.signature(DATASETS.get(name).load).parameters.values()
    return {p.name: p.default for p in params if p.kind == inspect.Parameter.KEYWORD_ONLY}


# Options every dataset takes, handled by `load_task` rather than the adapters, with their defaults. Not in
# `option_defaults`, so a suite that does not set them keeps its cells' identity.
COMMON_OPTIONS = {"allow_duplicates": False}
TRUE, FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def check_options(name: str, options: Mapping[str, Any]) -> None:
    valid = [*option_defaults(name), *COMMON_OPTIONS]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DataError(f"Dataset {name!r} takes no option {', '.join(map(repr, unknown))}. "
                        f"Valid options: {', '.join(valid)}.")


def flag_option(name: str, option: str, value) -> bool:
    """A yes/no dataset option given as a bool or as text (`--option allow_duplicates=true`)."""
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in TRUE + FALSE:
        return str(value).strip().lower() in TRUE
    raise DataError(f"Dataset {name!r}: option {option}={value!r} is not true or false. Fix: write {option}: true "
                    f"(suite) or --option {option}=true (CLI), or leave it out for false.")


def load_task(name: str, root: Path | str | None = None, **options) -> Task:
    """Build the task of dataset `name` from `root` (ignored by generated datasets)."""
    entry = DATASETS.get(name)
    check_options(name, options)
    allow_duplicates = flag_option(name, "allow_duplicates", options.pop("allow_duplicates", False))
    task = entry.load(Path(root) if root is not None else None, **options)
    if allow_duplicates:
        task = Task(replace(task.meta, allow_duplicates=True), task.index, task.images)
    return task
