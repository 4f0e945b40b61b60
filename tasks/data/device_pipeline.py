"""The device pipeline: decode once to a uint8 tensor store, augment whole batches on the training device.

    TaskDataModule(task, ..., pipeline="device")     # "auto": device on GPUs when the store fits, else cpu

A GPU trains ResNet-18 at 32-64 px about ten times faster than one CPU core can decode and augment
images one at a time with albumentations, so on a GPU the per-image CPU path, not the model, would
set the pace. For datasets that fit in memory (MedMNIST at any size, the fixtures, cached frames)
this path decodes every row once, at training resolution, into one uint8 tensor (N, 3, S, S); a
loader then serves whole batches by indexing that tensor (no per-image Python), and the batch is
augmented on the device it trains on, with per-sample random parameters (kornia's geometric
augmentation modules; brightness/contrast as albumentations draws it), then normalised.

The augmentation family is the one `tasks.data.transforms` builds with albumentations for the
per-image path (which stays for datasets that do not fit, and for CPUs): `light` = affine (scale
0.9-1.1, shift up to 6 %, p 0.5) + brightness/contrast (+-0.1, p 0.5); `standard` = light +
horizontal and vertical flips (p 0.5 each) + rotation up to 20 degrees (p 0.5). A test checks that
the two paths' output statistics agree. The path taken is a machine setting (like `num_workers`),
not part of a cell's identity: it changes which random augmentations are drawn, not their family.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from tasks.data.errors import DataError
from tasks.data.index import Task
from tasks.data.transforms import AUGMENT_LEVELS, eval_preset

PIPELINES = ("auto", "cpu", "device")
# The largest tensor store `auto` builds (bytes); above it the per-image CPU path is used.
STORE_LIMIT = int(float(os.environ.get("MEDTL_TENSOR_STORE_GB", "8")) * 2**30)


def store_bytes(rows: int, size: int) -> int:
    return rows * 3 * size * size


def resolve_pipeline(pipeline: str, accelerator: str, rows: int, size: int) -> str:
    """`auto` -> `device` on an accelerator when the uint8 store fits, else `cpu` (where per-image
    albumentations already keeps up: end to end 0.85-1.0 of model-only speed on 2 cores)."""
    if pipeline not in PIPELINES:
        raise ValueError(f"Unknown pipeline {pipeline!r}. Valid pipelines: {', '.join(PIPELINES)}.")
    if pipeline == "device" and store_bytes(rows, size) > STORE_LIMIT:
        raise DataError(f"pipeline: device needs a {store_bytes(rows, size) / 2**30:.1f} GiB uint8 store for {rows} images at "
                        f"{size} px, over the {STORE_LIMIT / 2**30:.1f} GiB limit. Fix: use pipeline: cpu, or raise "
                        "$MEDTL_TENSOR_STORE_GB if the machine has the memory.")
    if pipeline != "auto":
        return pipeline
    on_accelerator = accelerator not in ("cpu",) and (accelerator != "auto" or torch.cuda.is_available())
    return "device" if on_accelerator and store_bytes(rows, size) <= STORE_LIMIT else "cpu"


def loader_workers(num_workers: int | str, accelerator: str, pipeline: str) -> int:
    """DataLoader worker processes per device. `auto`: none on CPUs (measured: the main process loads
    40-140x faster than 2 cores train, and workers would take the cores the model needs) and for the
    device pipeline (slicing the store is free); up to 8 (cores - 1) on accelerators with the per-image path."""
    if num_workers != "auto":
        return int(num_workers)
    on_accelerator = accelerator not in ("cpu",) and (accelerator != "auto" or torch.cuda.is_available())
    if not on_accelerator or pipeline == "device":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def decode_store(task: Task, rows: np.ndarray, size: int) -> Tensor:
    """uint8 (len(rows), 3, size, size): each image decoded once and resized exactly as the CPU path resizes."""
    resize = eval_preset(size=size, mean=(0, 0, 0), std=(1, 1, 1)).transforms[0]  # the same A.Resize
    pixels = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    items = task.index["item"].to_numpy()
    for i, row in enumerate(rows):
        pixels[i] = resize(image=task.images.load(items[row]))["image"]
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


class StoredBatches(Dataset):
    """A batch sampler's index list -> (uint8 images, targets) sliced from the store in one step."""

    def __init__(self, pixels: Tensor, targets: np.ndarray) -> None:
        self.pixels, self.targets = pixels, torch.as_tensor(targets)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.pixels[index], self.targets[index]


def stored_loader(pixels: Tensor, targets: np.ndarray, *, batch_size: int, train: bool, seed: int,
                  pin_memory: bool) -> DataLoader:
    """Whole batches from the store; shuffled with a seeded generator for training, like the CPU path."""
    dataset = StoredBatches(pixels, targets)
    order = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)) if train else SequentialSampler(dataset)
    # A last batch of one breaks BatchNorm in training; evaluation keeps every row.
    sampler = BatchSampler(order, batch_size, drop_last=train and len(dataset) % batch_size == 1)
    return DataLoader(dataset, sampler=sampler, batch_size=None, pin_memory=pin_memory)


def batch_augmentation(augment: str) -> nn.Module | None:
    """kornia modules of the `augment` level on float images in [0, 1], one random draw per sample."""
    if augment not in AUGMENT_LEVELS:
        raise ValueError(f"Unknown augment level {augment!r}. Valid levels: {', '.join(AUGMENT_LEVELS)}.")
    if augment == "none":
        return None
    import kornia.augmentation as K

    steps = [
        # As A.Affine: x and y scaled independently (its keep_ratio=False), zeros outside the image (its fill 0).
        K.RandomAffine(degrees=0.0, translate=(0.06, 0.06), scale=(0.9, 1.1, 0.9, 1.1), p=0.5),
        BrightnessContrast(limit=0.1, p=0.5),
    ]
    if augment == "standard":
        steps += [K.RandomHorizontalFlip(p=0.5), K.RandomVerticalFlip(p=0.5),
                  K.RandomRotation(degrees=20.0, p=0.5)]
    return nn.Sequential(*steps)


class BrightnessContrast(nn.Module):
    """albumentations' RandomBrightnessContrast on [0, 1] images, one draw per sample: x * alpha + beta,
    alpha in 1 +- limit, beta in +- limit (its brightness_by_max). kornia's ColorJitter draws from
    another distribution (measured: a third less spread of the mean intensity), so the two paths
    would not be one family."""

    def __init__(self, limit: float, p: float) -> None:
        super().__init__()
        self.limit, self.p = limit, p

    def forward(self, x: Tensor) -> Tensor:
        n = len(x)
        shape = (n, 1, 1, 1)
        applied = (torch.rand(shape, device=x.device) < self.p).to(x.dtype)
        alpha = 1 + (torch.rand(shape, device=x.device) * 2 - 1) * self.limit * applied
        beta = (torch.rand(shape, device=x.device) * 2 - 1) * self.limit * applied
        return x * alpha + beta


class DeviceTransform(nn.Module):
    """uint8 batch on the training device -> float, augmented (training only), normalised."""

    def __init__(self, augment: str, mean, std) -> None:
        super().__init__()
        self.augment = batch_augmentation(augment)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: Tensor, training: bool) -> Tensor:
        x = images.float().div_(255.0)
        if training and self.augment is not None:
            x = self.augment(x).clamp_(0.0, 1.0)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x - mean) / std
