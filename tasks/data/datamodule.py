"""One LightningDataModule for pretraining and fine-tuning alike (the design card's shared DataModule)."""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from tasks.data.device_pipeline import DeviceTransform, decode_store, stored_loader
from tasks.data.extension import base_rows, extra_rows
from tasks.data.fractions import nested_subsets, subset_spec
from tasks.data.index import Task
from tasks.data.splits import Fold, make_fold
from tasks.data.transforms import eval_preset, train_preset


class IndexedImages(Dataset):
    """Rows of a task index -> (image tensor, target): class id, or a multi-hot vector."""

    def __init__(self, task: Task, rows: np.ndarray, transform) -> None:
        self.task = task
        self.rows = np.asarray(rows)
        self.transform = transform
        self.items = task.index["item"].to_numpy()[self.rows]
        if task.meta.kind == "multilabel":
            hot = np.zeros((len(self.rows), task.meta.num_classes), dtype=np.float32)
            for i, labels in enumerate(task.index["labels"].to_numpy()[self.rows]):
                hot[i, list(labels)] = 1.0
            self.targets = hot
        else:
            self.targets = task.labels[self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        image = self.task.images.load(self.items[i])
        return self.transform(image=image)["image"], torch.as_tensor(self.targets[i])


def seed_worker_augmentations(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: give each worker's copy of the transforms its own seed.

    Without it every worker would replay the parent's albumentations random state, so worker k
    and worker j would apply identical augmentations. torch derives `info.seed` from the loader's
    seeded generator, so this stays reproducible.
    """
    info = get_worker_info()
    transform = getattr(info.dataset, "transform", None)
    if transform is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(info.seed % 2**32)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """n / (K * count) per class (scikit-learn's 'balanced'); 0 for a class absent from training."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


MAX_POS_WEIGHT = 100.0  # cap on a multi-label pos_weight: a label seen once in 10 000 rows would weigh 10 000


def multilabel_pos_weight(hot: np.ndarray, max_weight: float = MAX_POS_WEIGHT) -> np.ndarray:
    """BCE's `pos_weight` per label from multi-hot training targets (N, C): negatives / positives,
    the ratio PyTorch's `BCEWithLogitsLoss` documents (a label on 100 of 400 images weighs 3), so each
    label's positives count as much as its negatives. Clipped to [1 / max_weight, max_weight]: a label
    on one image in thousands would otherwise dominate every batch it appears in; a label absent from
    training gets `max_weight` (there is nothing to weigh, and no infinity reaches the loss)."""
    hot = np.asarray(hot, dtype=np.float64)
    positives = hot.sum(axis=0)
    negatives = len(hot) - positives
    ratio = np.divide(negatives, positives, out=np.full(hot.shape[1], max_weight), where=positives > 0)
    return np.clip(ratio, 1.0 / max_weight, max_weight)


class TaskDataModule(L.LightningDataModule):
    """Serve one fold of a task: train / val / test loaders with presets from the input config.

    `fold=-1` uses the task's official split. `fraction` < 1 keeps that share of the training rows,
    `fraction` > 1 that many images (Hicks et al.'s 657-image run), as nested stratified subsets
    (`tasks.data.fractions`); the val and test rows are never reduced. A task with a minority-class
    extension (`tasks.data.extension`) is split on its own rows only, and the extra rows join the
    training part of every fold (after `fraction`), never validation or test.

    `pipeline` is `cpu` (albumentations per image, in `num_workers` loader processes) or `device`
    (`tasks.data.device_pipeline`: every row decoded once into a uint8 tensor store, whole batches
    served from it and augmented on the training device by `device_transform`, which the module's
    `on_after_batch_transfer` applies). `pin_memory` speeds host-to-GPU copies; off on CPUs.
    """

    def __init__(
        self,
        task: Task,
        *,
        fold: int,
        k: int,
        seed: int,
        size: int,
        mean,
        std,
        batch_size: int = 32,
        augment: str = "light",
        num_workers: int = 0,
        val_fraction: float = 0.15,
        fraction: float = 1.0,
        pipeline: str = "cpu",
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if pipeline not in ("cpu", "device"):
            raise ValueError(f"pipeline must be resolved to cpu or device (tasks.data.device_pipeline), got {pipeline!r}.")
        self.pipeline, self.pin_memory = pipeline, pin_memory
        self._stores: dict[str, torch.Tensor] = {}
        self._device_transform = DeviceTransform(augment, mean, std) if pipeline == "device" else None
        self.task = task
        self.fold_id, self.k, self.seed = fold, k, seed
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)
        self.batch_size, self.augment, self.num_workers = batch_size, augment, num_workers
        self.val_fraction, self.fraction = val_fraction, fraction
        self.fold: Fold | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.fold is not None:
            return
        own, extra = base_rows(self.task), extra_rows(self.task)
        # Split the target's own rows exactly as without an extension (same folds, same seeds).
        target = self.task if len(extra) == 0 else self.task.subset(own)
        fold = make_fold(target, fold=self.fold_id, k=self.k, seed=self.seed, val_fraction=self.val_fraction)
        fold = Fold(own[fold.train], own[fold.val], own[fold.test])
        if self.fraction != 1.0:
            fold = Fold(self._subsample(fold.train), fold.val, fold.test)
        if len(extra):
            fold = Fold(np.concatenate([fold.train, extra]), fold.val, fold.test)
        self.fold = fold

    def _subsample(self, rows: np.ndarray) -> np.ndarray:
        # Nested subsets: with one seed, the 10 % rows are inside the 50 % rows, so a
        # data-efficiency curve measures more data, not different data.
        spec = subset_spec(self.fraction)  # > 1: a count of images; 657.5 is refused, not truncated
        return nested_subsets(self.task, rows, [spec], seed=self.seed)[spec]

    def class_weights(self) -> torch.Tensor:
        """Loss weights from the training rows: 'balanced' CE class weights (single-label), or BCE's
        `pos_weight` per label (multi-label, `multilabel_pos_weight`)."""
        self.setup()
        assert self.fold is not None
        if self.task.meta.kind == "multilabel":
            hot = IndexedImages(self.task, self.fold.train, None).targets
            return torch.tensor(multilabel_pos_weight(hot), dtype=torch.float32)
        labels = self.task.labels[self.fold.train]
        return torch.tensor(balanced_class_weights(labels, self.task.meta.num_classes), dtype=torch.float32)

    def _stored(self, part: str, rows: np.ndarray, train: bool) -> DataLoader:
        if part not in self._stores:  # each row decoded once per datamodule (parts are disjoint)
            self._stores[part] = decode_store(self.task, rows, self.size)
        targets = IndexedImages(self.task, rows, None).targets
        return stored_loader(self._stores[part], targets, batch_size=self.batch_size, train=train, seed=self.seed,
                             pin_memory=self.pin_memory)

    def device_transform(self, batch, training: bool):
        """The device pipeline's per-batch step (on the training device); the CPU path's batches pass through."""
        if self._device_transform is None or not isinstance(batch, (list, tuple)):
            return batch
        return type(batch)([self._device_transform(batch[0], training), *batch[1:]])

    def _loader(self, rows: np.ndarray, train: bool) -> DataLoader:
        transform = (
            train_preset(size=self.size, mean=self.mean, std=self.std, augment=self.augment, seed=self.seed)
            if train
            else eval_preset(size=self.size, mean=self.mean, std=self.std)
        )
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            IndexedImages(self.task, rows, transform),
            batch_size=self.batch_size,
            shuffle=train,
            # A last batch of one breaks BatchNorm in training; evaluation keeps every row.
            drop_last=train and len(rows) % self.batch_size == 1,
            num_workers=self.num_workers,
            # Persistent workers keep their augmentation state across epochs; restarted workers
            # would reseed identically and repeat last epoch's augmentations.
            persistent_workers=self.num_workers > 0,
            # On GPUs keep more batches in flight, so a slow image never stalls the device.
            prefetch_factor=(4 if self.pin_memory else 2) if self.num_workers > 0 else None,
            worker_init_fn=seed_worker_augmentations if self.num_workers > 0 else None,
            generator=generator,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        if self.pipeline == "device":
            return self._stored("train", self.fold.train, train=True)
        return self._loader(self.fold.train, train=True)

    def val_dataloader(self) -> DataLoader:
        if self.pipeline == "device":
            return self._stored("val", self.fold.val, train=False)
        return self._loader(self.fold.val, train=False)

    def test_dataloader(self) -> DataLoader:
        if self.pipeline == "device":
            return self._stored("test", self.fold.test, train=False)
        return self._loader(self.fold.test, train=False)
