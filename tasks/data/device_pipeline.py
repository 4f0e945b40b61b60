"""The device pipeline: decode once to a uint8 tensor store, augment whole batches on the training device.

    TaskDataModule(task, ..., pipeline="device")     # suites: throughput.pipeline auto = device when the store fits

A GPU trains ResNet-18 at 32-64 px about ten times faster than one CPU core can decode and augment
images one at a time with albumentations, so on a GPU the per-image CPU path, not the model, would
set the pace. For datasets that fit in memory (MedMNIST at any size, the fixtures, cached frames)
this path decodes every row once, at training resolution, into one uint8 tensor (N, 3, S, S); a
loader then serves whole batches by indexing that tensor (no per-image Python), and the batch is
augmented on the device it trains on, with per-sample random parameters (one `grid_sample` per
geometric group, `BatchAugment`; brightness/contrast as albumentations draws it), then normalised.

The augmentation family is the one `tasks.data.transforms` builds with albumentations for the
per-image path (which stays for datasets that do not fit, and where a suite pins `pipeline: cpu`): `light` = affine (scale
0.9-1.1, shift up to 6 %, p 0.5) + brightness/contrast (+-0.1, p 0.5); `standard` = light +
horizontal and vertical flips (p 0.5 each) + rotation up to 20 degrees (p 0.5). A test checks that
the two paths' output statistics agree. The path taken is a machine setting (like `num_workers`),
not part of a cell's identity: it changes which random augmentations are drawn, not their family.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from tasks.data.errors import DataError
from tasks.data.index import Task
from tasks.data.transforms import AUGMENT_LEVELS, eval_preset
from tracking import settings

PIPELINES = ("auto", "cpu", "device")


def store_limit() -> int:
    """The largest tensor store `auto` builds (bytes; $MEDTL_TENSOR_STORE_GB, default 8 GiB); above it the
    per-image CPU path is used. Read on use, not at import, so a bad value is a SettingError naming it."""
    return int(settings.read("MEDTL_TENSOR_STORE_GB") * 2**30)


def store_bytes(rows: int, size: int) -> int:
    return rows * 3 * size * size


def resolve_pipeline(pipeline: str, rows: int, size: int) -> str:
    """`auto` -> `device` when the uint8 store fits in `store_limit()`, on any device, else `cpu`.

    Measured on 2 CPU cores too (`benchmark/speed/pipeline_bench.py`, ResNet-18 and the small CNN at 32
    and 64 px, `light` and `standard` augmentation): the store path reached 0.96-0.99 of model-only
    training, the per-image path 0.85-0.95 (two runs), because a main-process loader adds its time
    to every step, and slicing the store plus augmenting the batch cost 1.1-2.7 ms a batch of 32
    against albumentations' 4.9-9.6 ms. The per-image path stays for what does not fit, or where a suite
    pins `pipeline: cpu`."""
    if pipeline not in PIPELINES:
        raise ValueError(f"Unknown pipeline {pipeline!r}. Valid pipelines: {', '.join(PIPELINES)}.")
    limit = store_limit()
    if pipeline == "device" and store_bytes(rows, size) > limit:
        raise DataError(f"pipeline: device needs a {store_bytes(rows, size) / 2**30:.1f} GiB uint8 store for {rows} images at "
                        f"{size} px, over the {limit / 2**30:.1f} GiB limit. Fix: use pipeline: cpu, or raise "
                        "$MEDTL_TENSOR_STORE_GB if the machine has the memory.")
    if pipeline != "auto":
        return pipeline
    return "device" if store_bytes(rows, size) <= limit else "cpu"


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


class StoredRows(Dataset):
    """Rows of the uint8 store; a whole batch is sliced in one step (`__getitems__`, which torch's
    DataLoader calls with a batch's indices instead of calling `__getitem__` once per row)."""

    def __init__(self, pixels: Tensor, targets: np.ndarray) -> None:
        self.pixels, self.targets = pixels, torch.as_tensor(targets)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, row: int):
        return self.pixels[row], self.targets[row]

    def __getitems__(self, rows: list[int]):
        index = torch.as_tensor(rows, dtype=torch.long)
        return self.pixels[index], self.targets[index]


def _sliced_batch(batch):
    """`StoredRows.__getitems__` returns the batch already stacked: nothing to collate."""
    return batch


def stored_loader(pixels: Tensor, targets: np.ndarray, *, batch_size: int, train: bool, seed: int,
                  pin_memory: bool) -> DataLoader:
    """Whole batches from the store, drawn exactly as the CPU path's loader draws its rows.

    Same sampler, batch size, last-batch rule and seeded generator as `TaskDataModule._loader`, so
    both paths train on the same rows in the same order (with `augment: none` the pipelines then
    differ by float rounding only), and under DDP Lightning swaps in its DistributedSampler here as
    it does there, giving each rank its share.
    """
    return DataLoader(
        StoredRows(pixels, targets),
        batch_size=batch_size,
        shuffle=train,
        # A last batch of one breaks BatchNorm in training; evaluation keeps every row.
        drop_last=train and len(pixels) % batch_size == 1,
        collate_fn=_sliced_batch,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=pin_memory,
    )


def batch_augmentation(augment: str) -> nn.Module | None:
    """The `augment` level as one module on float images in [0, 1], one random draw per sample."""
    if augment not in AUGMENT_LEVELS:
        raise ValueError(f"Unknown augment level {augment!r}. Valid levels: {', '.join(AUGMENT_LEVELS)}.")
    return None if augment == "none" else BatchAugment(standard=augment == "standard")


@functools.lru_cache(maxsize=16)
def _pixel_centres(h: int, w: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """x (W,) and y (H, 1) of the pixel centres in normalised coordinates (align_corners False)."""
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    ys = ((torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1).view(h, 1)
    return xs, ys


def _warp(x: Tensor, theta: Tensor) -> Tensor:
    """Resample every image through its own output -> input map in normalised coordinates, `theta`
    (N, 6) = the rows of a (2, 3) matrix; bilinear, zeros outside (albumentations' INTER_LINEAR and
    constant fill 0). With align_corners False an identity or a flip map lands on pixel centres, so
    those samples come back exactly."""
    n, _, h, w = x.shape
    # F.affine_grid computes this as a (N, H*W, 3) x (N, 3, 2) bmm, whose K = 3 made it cost more
    # than the sampling itself on CPU (139 us against 116 us at 32 px); broadcasting is 6 FMAs a pixel.
    xs, ys = _pixel_centres(h, w, x.device, x.dtype)
    t = theta.to(x.dtype).reshape(n, 6, 1, 1)
    grid = torch.stack([t[:, 0] * xs + t[:, 1] * ys + t[:, 2], t[:, 3] * xs + t[:, 4] * ys + t[:, 5]], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class BatchAugment(nn.Module):
    """`tasks.data.transforms.train_preset`'s steps on a whole batch, in its order and with its
    distributions, each sample drawing its own parameters:

    light:    A.Affine (x and y scaled independently in 0.9-1.1, as its keep_ratio=False; shifted up
              to 6 % of the side; p 0.5) -> RandomBrightnessContrast (+-0.1, p 0.5; clipped to [0, 1]
              as uint8 clips)
    standard: light -> HorizontalFlip (p 0.5) -> VerticalFlip (p 0.5) -> Rotate (+-20 degrees, p 0.5)

    Why not kornia's augmentation modules (used before): each one generates parameters, selects
    the applied subset and warps on its own, about 30 small ops per module; at 32 px that cost
    1.2-2.9 ms a batch of 32 on 2 CPU cores, up to 5 % of a small CNN's training step. Here each
    geometric group is one `grid_sample` over the batch (flips and rotation composed into one map;
    warping only the drawn samples, as kornia does, saved nothing measurable at 32-224 px): 0.4-1.0 ms
    a batch at 32 px, 2-3x faster than kornia at 32-64 px and 1.5-2.5x at 224 px (medians of 30
    batches on an idle machine; such short timings vary by +-30 %). The images
    are square (the store is (N, 3, S, S)), so normalised coordinates rotate without an aspect correction.
    """

    def __init__(self, standard: bool, *, scale: float = 0.1, shift: float = 0.06, limit: float = 0.1,
                 degrees: float = 20.0, p: float = 0.5) -> None:
        super().__init__()
        self.standard, self.scale, self.shift, self.degrees, self.p = standard, scale, shift, degrees, p
        self.color = BrightnessContrast(limit, p)

    def forward(self, x: Tensor) -> Tensor:
        # Every parameter of the batch in one draw (at 32 px the per-op overhead, not the pixels, is the cost).
        u = torch.rand(len(x), 9, device=x.device)
        drawn = (u[:, [0, 5, 6, 7]] < self.p).to(u.dtype)  # affine, horizontal flip, vertical flip, rotation
        zero = torch.zeros_like(u[:, 0])
        # Affine: output = S * input + t about the centre; grid_sample needs the inverse map.
        inverse_scale = 1 / (1 + (u[:, 1:3] * 2 - 1) * self.scale * drawn[:, :1])  # x and y independently
        shift = (u[:, 3:5] * 2 - 1) * (2 * self.shift) * drawn[:, :1]  # normalised coordinates span 2
        x = _warp(x, torch.stack([inverse_scale[:, 0], zero, -shift[:, 0] * inverse_scale[:, 0],
                                  zero, inverse_scale[:, 1], -shift[:, 1] * inverse_scale[:, 1]], 1))
        x = self.color(x).clamp_(0.0, 1.0)
        if not self.standard:
            return x
        # Flips then rotation, forward map R(a) V H; its inverse H V R(-a) (flips are their own inverse).
        h, v = (1 - 2 * drawn[:, 1]), (1 - 2 * drawn[:, 2])
        angle = (u[:, 8] * 2 - 1) * (self.degrees * math.pi / 180) * drawn[:, 3]
        cos, sin = torch.cos(angle), torch.sin(angle)
        return _warp(x, torch.stack([h * cos, h * sin, zero, -v * sin, v * cos, zero], 1))


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
        # albumentations' Normalize (max_pixel_value 255) computes (x - 255 mean) * (1 / (255 std)) in
        # float32; doing the same makes un-augmented batches bit-equal to the per-image path's, so a
        # cell without augmentation trains identically on either. (x / 255 - mean) / std differed by
        # up to 5e-7, and 15 epochs on BreastMNIST amplified that into another model (MCC .59 vs .72).
        mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("shift", mean * 255, persistent=False)
        self.register_buffer("factor", 1 / (std * 255), persistent=False)

    @torch.no_grad()
    def forward(self, images: Tensor, training: bool) -> Tensor:
        x = images.float()
        if training and self.augment is not None:
            x = self.augment(x.div_(255.0)).mul_(255.0)  # augmented in [0, 1], clipped as albumentations clips uint8
        return (x - self.shift.to(x.device)) * self.factor.to(x.device)
