"""Dataset adapters: `@register_dataset(name, card=...)` on a function `(root, **options) -> Task`.

    >>> from tasks.data import load_task
    >>> load_task("gen-target").meta.class_names[:2]
    ('lesion_0deg', 'lesion_45deg')

Adapter options are the function's keyword-only parameters; a name the adapter does not take is
refused with the valid ones, never silently ignored.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


def check_options(name: str, options: Mapping[str, Any]) -> None:
    valid = option_defaults(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DataError(f"Dataset {name!r} takes no option {', '.join(map(repr, unknown))}. "
                        f"Valid options: {', '.join(valid) or 'none'}.")


def load_task(name: str, root: Path | str | None = None, **options) -> Task:
    """Build the task of dataset `name` from `root` (ignored by generated datasets)."""
    entry = DATASETS.get(name)
    check_options(name, options)
    return entry.load(Path(root) if root is not None else None, **options)
