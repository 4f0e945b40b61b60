"""Tasks: datasets as indexes, splits, transforms, the shared DataModule, metrics, the classifier.

    >>> from tasks import load_task, list_datasets
    >>> task = load_task("gen-target")
    >>> task.meta.class_names[:2], len(task.index)

Imports `backbones` only (plus `tracking`, as every package may).
"""

from tasks import adapters as _adapters  # noqa: F401  (registers the dataset adapters)
from tasks.datamodule import TaskDataModule, balanced_class_weights
from tasks.errors import DataError, ImageReadError, UnknownDatasetError
from tasks.index import Task, TaskMeta, make_index
from tasks.module import ClassifierModule
from tasks.registry import list_datasets, load_task, register_dataset
from tasks.splits import Fold, assign_folds, make_fold
from tasks.strategies import list_strategies, strategy_callbacks

__all__ = [
    "ClassifierModule",
    "DataError",
    "Fold",
    "ImageReadError",
    "Task",
    "TaskDataModule",
    "TaskMeta",
    "UnknownDatasetError",
    "assign_folds",
    "balanced_class_weights",
    "list_datasets",
    "list_strategies",
    "load_task",
    "make_fold",
    "make_index",
    "register_dataset",
    "strategy_callbacks",
]
