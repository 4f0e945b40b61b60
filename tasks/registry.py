"""Dataset adapter registry: `@register_dataset(name)` on a function `(root, **options) -> Task`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tasks.errors import UnknownDatasetError
from tasks.index import Task

Adapter = Callable[..., Task]
_REGISTRY: dict[str, Adapter] = {}


def register_dataset(name: str):
    def decorate(fn: Adapter) -> Adapter:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return decorate


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def load_task(name: str, root: Path | str | None = None, **options) -> Task:
    """Build the task of dataset `name` from `root` (ignored by generated datasets)."""
    if name not in _REGISTRY:
        raise UnknownDatasetError(f"Unknown dataset {name!r}. Valid names: {', '.join(list_datasets())}.")
    return _REGISTRY[name](Path(root) if root is not None else None, **options)
