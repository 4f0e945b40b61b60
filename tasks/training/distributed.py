"""What a cell on several devices changes: the per-device batch, BatchNorm, and training throughput.

    medtl benchmark SUITE --accelerator gpu      # a suite with `devices: 4` trains each cell with DDP on 4 GPUs

A cell keeps its global batch: each of the N devices gets `batch_size / N` rows, DDP averages the
gradients, so one optimizer step sees the same number of rows as on one device. On GPUs BatchNorm
is synchronised across ranks (Lightning's `sync_batchnorm`), so its statistics are also those of
the global batch; torch's SyncBatchNorm has no CPU kernel, so on CPU (gloo) each rank normalises
its own share. Training throughput comes from Lightning's `ThroughputMonitor` on rank zero, which
scales its per-device rate by the world size (it assumes ranks are alike, as DDP's lock-step makes
them), logged at the end of each training epoch: `train/samples_per_sec` (all ranks, logged when N > 1), `train/device/samples_per_sec`,
and with FLOPs per batch `train/device/flops_per_sec`, plus `train/device/mfu` where Lightning
knows the device's peak (its table of CUDA GPUs; none for CPUs).
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch.callbacks import Callback, ThroughputMonitor
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities import measure_flops

# ThroughputMonitor averages over a window of batches; at most this many (Lightning's default).
WINDOW = 100


def world_size(devices: int | str) -> int:
    """Ranks of a cell: `devices` as an integer (a count; Lightning's "auto" and lists are not used by suites)."""
    return int(devices)


def per_device_batch(batch_size: int, world: int) -> int:
    """The share of the global batch each rank loads; the global batch must split evenly."""
    if batch_size % world:
        raise ValueError(
            f"batch_size {batch_size} does not split evenly over {world} devices: each device gets batch_size / "
            f"devices rows so that a step sees the same global batch as on one device. Set hparams.batch_size to a "
            f"multiple of {world} in the suite (e.g. {batch_size - batch_size % world or world}).")
    return batch_size // world


def sync_batchnorm(accelerator: str, world: int) -> bool:
    """SyncBatchNorm where torch has it (CUDA); a CPU rank would fail in its first forward."""
    if world == 1:
        return False
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


class TrainingFlops(Callback):
    """Sets `flops_per_batch` (forward + backward of one per-device batch) for ThroughputMonitor's FLOP/s and MFU.

    Counted with Lightning's `measure_flops` on two images in eval mode (BatchNorm's running
    statistics and the RNG stay untouched, so the fit is the same with or without it), scaled to
    the batch; gradients it leaves are cleared. Runs when training starts, after strategies froze
    what they freeze, so a linear probe counts only the head's backward.
    """

    def __init__(self, batch_size: int, image_size: int) -> None:
        self.batch_size, self.image_size = batch_size, image_size

    def on_train_start(self, trainer, pl_module) -> None:
        x = torch.zeros(2, 3, self.image_size, self.image_size, device=pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        try:
            flops = measure_flops(pl_module, lambda: pl_module(x), loss_fn=torch.Tensor.sum)
        except Exception:  # noqa: BLE001 - an op torch cannot count: throughput is still logged, without FLOPs
            flops = None
        finally:
            pl_module.train(was_training)
            pl_module.zero_grad(set_to_none=True)
        if flops:
            pl_module.flops_per_batch = flops * self.batch_size // 2


class EpochThroughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor, logging at the last training batch of each epoch instead of every step.

    Every step would be one more request per step to a remote tracking server; the value at an epoch's
    end is the rate over the last `window_size` batches. Validation throughput is not logged.
    """

    def _compute(self, trainer, iter_num=None) -> None:
        if trainer.state.stage == RunningStage.TRAINING and trainer.is_last_batch:
            super()._compute(trainer, iter_num)


def batch_rows(batch) -> int:
    """Images in an (images, targets) batch; a module-level function, so spawned ranks can unpickle it."""
    return len(batch[0])


def throughput_callbacks(*, train_rows: int, batch_size: int, world: int, image_size: int) -> list[Callback]:
    """TrainingFlops + EpochThroughput, its window one epoch long (2 to WINDOW batches), so it is full by the
    end of the first epoch (the second, for a cell with one batch per epoch)."""
    batches = math.ceil(math.ceil(train_rows / world) / batch_size)
    return [TrainingFlops(batch_size, image_size),
            EpochThroughput(batch_size_fn=batch_rows, window_size=max(2, min(WINDOW, batches)))]
