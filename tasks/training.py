"""Fit a classifier on one fold and test it: the routine pretraining and fine-tuning cells share."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import lightning.pytorch as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from tasks.datamodule import TaskDataModule
from tasks.index import Task
from tasks.module import ClassifierModule
from tasks.strategies import strategy_callbacks


@dataclass
class TrainResult:
    """What a cell needs afterwards: the fitted module, its data, and the final test metrics."""

    module: ClassifierModule  # holds the backbone and the test predictions
    datamodule: TaskDataModule  # holds the fold (train/val/test rows)
    metrics: dict[str, float]  # "test/mcc", ... as logged by the module
    fit_seconds: float  # wall time of trainer.fit
    test_seconds: float  # wall time of trainer.test (decode + transforms + forward)
    extra: dict = field(default_factory=dict)


def train_and_test(
    task: Task,
    backbone,
    *,
    fold: int,
    k: int,
    seed: int,
    hp: Mapping,
    size: int,
    strategy: str = "full",
    fraction: float = 1.0,
    logger=None,
    accelerator: str = "cpu",
    devices: int | str = 1,
    precision: str = "32-true",
    progress_position: int = 0,
    callbacks: list[Callback] | None = None,
) -> TrainResult:
    """Train `backbone` + a new head on `task`'s fold with hyperparameters `hp`, then test.

    `hp` keys: epochs, batch_size, lr, weight_decay, optimizer, head_l1, head_l2, dropout,
    class_weighted, augment, num_workers, unfreeze_every, unfreeze_lr_factor.
    """
    L.seed_everything(seed, workers=True, verbose=False)
    config = backbone.input_config
    if size < config.min_size:
        raise ValueError(
            f"Image size {size} is below what backbone {backbone.name!r} accepts ({config.min_size} px); "
            f"set image_size >= {config.min_size} in the suite or pick another backbone."
        )
    datamodule = TaskDataModule(
        task,
        fold=fold,
        k=k,
        seed=seed,
        size=size,
        mean=config.mean,
        std=config.std,
        batch_size=int(hp["batch_size"]),
        augment=str(hp["augment"]),
        num_workers=int(hp.get("num_workers", 0)),
        fraction=fraction,
    )
    datamodule.setup()
    module = ClassifierModule(
        backbone,
        task.meta,
        lr=float(hp["lr"]),
        weight_decay=float(hp["weight_decay"]),
        optimizer=str(hp["optimizer"]),
        head_l1=float(hp["head_l1"]),
        head_l2=float(hp["head_l2"]),
        dropout=float(hp["dropout"]),
        class_weights=datamodule.class_weights() if hp["class_weighted"] else None,
    )
    common = dict(
        accelerator=accelerator,
        precision=precision,
        logger=logger if logger is not None else False,
        # Cells export what they need explicitly (pretrain checkpoints); Lightning's own
        # checkpoints would only fill the disk.
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        deterministic="warn",
    )
    progress = TQDMProgressBar(process_position=progress_position, leave=False)
    distributed = devices not in (1, "1")
    trainer = L.Trainer(
        max_epochs=int(hp["epochs"]),
        devices=devices,
        # Several devices: spawn the DDP workers from this process. The default launcher would
        # re-run the whole command (the suite runner, its MLflow runs) once per rank; with spawn
        # only `fit` is distributed and rank 0's weights come back to this process.
        strategy="ddp_spawn" if distributed else "auto",
        callbacks=[*strategy_callbacks(strategy, **hp), progress, *(callbacks or [])],
        num_sanity_val_steps=0,
        **common,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    fit_seconds = time.perf_counter() - start
    if distributed:
        # Test in this process on one device, so every prediction lands in `module.test_outputs`
        # (a DistributedSampler would give each rank a share of the test set).
        trainer = L.Trainer(devices=1, callbacks=[progress], **common)
    start = time.perf_counter()
    results = trainer.test(module, datamodule=datamodule, verbose=False)
    test_seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    return TrainResult(module, datamodule, metrics, fit_seconds, test_seconds)
