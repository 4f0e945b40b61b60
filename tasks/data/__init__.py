"""The data side of a task: datasets as indexes, splits, images, transforms, the shared DataModule.

    >>> from tasks.data import load_task, list_datasets
    >>> task = load_task("gen-target")
    >>> task.meta.class_names[:2], len(task.index)

Adapters (`adapters/`, one card each), the index and its checks (`index.py`), splits and label
fractions, image decoding, albumentations presets, the `TaskDataModule` that pretraining and
fine-tuning share, and the dataset tools behind `medtl data` (download, verify, describe, audit).
Imports `backbones` (input configs, the registry helper); never the training side.
"""

from tasks.data import adapters as _adapters  # noqa: F401  (registers the dataset adapters)
from tasks.data.cards import DatasetCard, Published, RemoteFile, Source
from tasks.data.datamodule import TaskDataModule, balanced_class_weights, multilabel_pos_weight
from tasks.data.errors import DataError, ImageReadError, UnknownDatasetError
from tasks.data.index import Task, TaskMeta, make_index
from tasks.data.registry import DATASETS, dataset_card, list_datasets, load_task, option_defaults, register_dataset
from tasks.data.splits import Fold, assign_folds, make_fold

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetCard",
    "Fold",
    "ImageReadError",
    "Published",
    "RemoteFile",
    "Source",
    "Task",
    "TaskDataModule",
    "TaskMeta",
    "UnknownDatasetError",
    "assign_folds",
    "balanced_class_weights",
    "dataset_card",
    "list_datasets",
    "load_task",
    "make_fold",
    "make_index",
    "multilabel_pos_weight",
    "option_defaults",
    "register_dataset",
]
