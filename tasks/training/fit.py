"""Fit a classifier on one fold and test it: the routine pretraining and fine-tuning cells share.

Strategies that train go through Lightning (`_fit_and_test`); strategies with a `fit` of their own
(frozen features + SVM, VLAD: `tasks/training/strategies/svm.py`, `vlad.py`) go through
`_fit_frozen`, which returns the same `TrainResult`, so a cell logs the same metrics and artifacts.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.environments import LightningEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from tasks.data.datamodule import TaskDataModule
from tasks.data.device_pipeline import loader_workers, resolve_pipeline
from tasks.data.index import Task
from tasks.training.distributed import per_device_batch, sync_batchnorm, throughput_callbacks, world_size
from tasks.training.module import ClassifierModule
from tasks.training.resume import checkpoint_progress, last_checkpoint, resume_callbacks
from tasks.training.setup import Machine, TrainPlan
from tasks.training.progress import TransientProgressBar
from tasks.training.speed import Compile, MemoryFormat, warn_precision
from tasks.training.strategies import get_strategy
from tracking.runs import interrupted


@dataclass
class TrainResult:
    """What a cell needs afterwards: the fitted module, its data, and the final test metrics."""

    # Holds the backbone and the test predictions: a ClassifierModule, or for strategies that do not
    # train with Lightning a FrozenFeatureClassifier (strategies/svm.py) with the same test interface.
    module: ClassifierModule
    datamodule: TaskDataModule  # holds the fold (train/val/test rows)
    metrics: dict[str, float]  # "test/mcc", ... as logged by the module
    fit_seconds: float  # wall time of trainer.fit
    test_seconds: float  # wall time of trainer.test (decode + transforms + forward)
    selected_epoch: int = -1  # 0-based epoch whose weights were tested (the last one without selection)
    epochs_trained: int = 0  # epochs run (fewer than asked when early stopping ends the fit)
    extra: dict = field(default_factory=dict)


# selection name -> (logged metric, better when); "last" tests the final weights.
SELECTION = {"mcc": ("val/mcc", "max"), "auc": ("val/auc", "max"), "loss": ("val/loss", "min")}


def selection_callbacks(select: str, patience: int, folder: Path) -> list[Callback]:
    """Keep the best epoch by a validation metric (Lightning's ModelCheckpoint, weights only, in `folder`)
    and optionally stop when it has not improved for `patience` epochs."""
    if select == "last":
        return [EarlyStopping("val/loss", patience=patience)] if patience else []
    monitor, mode = SELECTION[select]
    # `{epoch}` in the name says which epoch was kept; only the best file exists at any time.
    callbacks: list[Callback] = [ModelCheckpoint(dirpath=folder, filename="{epoch}", monitor=monitor, mode=mode,
                                                 save_top_k=1, save_weights_only=True, auto_insert_metric_name=False)]
    if patience:
        callbacks.append(EarlyStopping(monitor, mode=mode, patience=patience))
    return callbacks


def train_and_test(task: Task, backbone, plan: TrainPlan, machine: Machine = Machine(), *, logger=None,
                   callbacks: list[Callback] | None = None, keep_checkpoint: Path | None = None,
                   test: bool = True) -> TrainResult:
    """Train `backbone` + a new head on `task`'s fold as `plan` says, on `machine`, then test.

    `plan.hp` holds the resolved hyperparameters of `plan.strategy` (`Strategy.resolve`): the shared
    entries of `tasks.training.hparams` it reads plus its own. `machine` holds the settings that change
    speed, not results (tasks.training.setup). The selected epoch's checkpoint is deleted after the test
    unless `keep_checkpoint` names a file to copy it to. With `test=False` (an Optuna trial) the fit ends
    before the test pass: no test row reaches the caller, and the result's metrics hold no test/* entry.

    With `machine.devices` N > 1 the fit runs DDP over N processes, each loading batch_size / N rows (the
    global batch stays the same; `tasks.training.distributed`), and the test runs once, on one device.
    Training throughput (img/s over all ranks, FLOP/s, MFU where the peak is known) is logged to
    `logger` by Lightning's ThroughputMonitor.

    A strategy that does not train with Lightning (its `fit` is set) gets the same fold and returns
    the same result; it reads features from `machine.feature_cache` (default
    `tasks.training.features.default_cache_dir()`), extracts on one device in float32 (`devices`
    and `precision` do not apply to it) and writes no checkpoint. A strategy that cannot apply to
    this backbone or task raises StrategyNotApplicable here, before any work.

    `machine.memory_format` ( auto | channels_last | contiguous; auto = channels_last for
    convnets) is the layout of weights and batches (`tasks.training.speed`). bf16 asked on a CPU that
    emulates it runs as asked with a warning; `result.extra` records the precision and layout used.

    `machine.pipeline` ( auto | cpu | device; `tasks.data.device_pipeline`) is how training
    batches are made: per image with albumentations on the CPU, or from a uint8 tensor store augmented
    in whole batches on the training device (auto: device when the store fits, on CPUs too).

    `machine.compile` runs the training steps through `torch.compile` (`tasks.training.speed.Compile`).

    `machine.resume_dir` makes the fit resumable: a full checkpoint and the random state at every epoch end, and
    a fit that finds `last.ckpt` there continues from it (`tasks.training.resume`); `result.extra` then holds
    `resumed_from_epoch` and `resumed_from_step`. The selected epoch's checkpoint lives there too, so it survives.
    """
    fold, k, seed, hp, size, fraction = plan.fold, plan.k, plan.seed, plan.hp, plan.size, plan.fraction
    accelerator, devices = machine.accelerator, machine.devices
    strategy = get_strategy(plan.strategy) if isinstance(plan.strategy, str) else plan.strategy
    if not test and not strategy.trains:
        raise ValueError(f"strategy {strategy.name!r} ({strategy.kind}) has no fit to stop before its test; only trained "
                         "strategies run without a test pass (Optuna trials).")
    strategy.check(backbone, hp, image_size=size, kind=task.meta.kind)
    L.seed_everything(seed, workers=True, verbose=False)
    config = backbone.input_config
    if size < config.min_size:
        raise ValueError(
            f"Image size {size} is below what backbone {backbone.name!r} accepts ({config.min_size} px); "
            f"set image_size >= {config.min_size} in the suite or pick another backbone."
        )
    pipeline = resolve_pipeline(machine.pipeline, len(task.index), size)
    num_workers = loader_workers(machine.num_workers, accelerator, pipeline if strategy.trains else "cpu")
    on_gpu = accelerator not in ("cpu",) and torch.cuda.is_available()
    # Several devices keep the global batch: each rank loads its share (tasks.training.distributed).
    world = world_size(devices) if strategy.trains else 1
    batch_size = per_device_batch(int(hp.get("batch_size", 32)), world)
    datamodule = TaskDataModule(
        task,
        fold=fold,
        k=k,
        seed=seed,
        size=size,
        mean=config.mean,
        std=config.std,
        # Strategies that do not train read neither (their features are un-augmented).
        batch_size=batch_size,
        augment=str(hp.get("augment", "none")),
        num_workers=num_workers,
        fraction=fraction,
        # Frozen-feature strategies extract with their own loader (tasks.training.features).
        pipeline=pipeline if strategy.trains else "cpu",
        pin_memory=on_gpu,
    )
    datamodule.setup()
    if not strategy.trains:
        return _fit_frozen(strategy, task, backbone, datamodule, hp, size=size, seed=seed, accelerator=accelerator,
                           num_workers=num_workers, logger=logger, feature_cache=machine.feature_cache)
    module = ClassifierModule(
        backbone,
        task.meta,
        lr=float(hp["lr"]),
        weight_decay=float(hp["weight_decay"]),
        optimizer=str(hp["optimizer"]),
        head_l1=float(hp["head_l1"]),
        head_l2=float(hp["head_l2"]),
        dropout=float(hp["dropout"]),
        schedule=str(hp.get("schedule", "none")),
        warmup_epochs=int(hp.get("warmup_epochs", 0)),
        class_weights=datamodule.class_weights() if hp["class_weighted"] else None,
    )
    select, patience = str(hp.get("select", "last")), int(hp.get("patience", 0))
    if select != "last" and len(datamodule.fold.val) == 0:
        warnings.warn(f"{task.meta.name}: no validation rows to select an epoch by {select}; testing the last epoch "
                      "(the training set is too small to carve validation rows from).", stacklevel=2)
        select = "last"
    # Checkpoints of the selected epoch live in a temporary folder, gone after the test; a resumable fit keeps them
    # beside its epoch checkpoint (the resumed fit's selection callback finds its best epoch there).
    layout = MemoryFormat(machine.memory_format)
    precision = warn_precision(machine.precision, accelerator)
    resume = Path(machine.resume_dir) if machine.resume_dir is not None else None
    with tempfile.TemporaryDirectory(prefix="medtl-ckpt-") as scratch, _sigterm_interrupts():
        folder = resume / "selected" if resume is not None else Path(scratch)
        result = _fit_and_test(module, datamodule, strategy, hp, selection_callbacks(select, patience, folder),
                               logger=logger, accelerator=accelerator, devices=devices, precision=precision,
                               progress_position=machine.progress_position, test=test, resume=resume,
                               callbacks=[layout, Compile(machine.compile), *(callbacks or [])])
        result.extra.update({"precision": precision, "memory_format": layout.resolved or "contiguous",
                             "pipeline": pipeline, "compile": machine.compile, "devices": world_size(devices)})
        best = next(Path(folder).glob("*.ckpt"), None)
        if keep_checkpoint is not None and best is not None:
            shutil.copy(best, keep_checkpoint)
        return result


@contextmanager
def _sigterm_interrupts():
    """Lightning's SIGTERM handler, chained before medtl's, stops its loops with SIGTERMException (a SystemExit)
    when medtl's handler has put the signal off for a moment (tracking.runs.in_store_call): either way the fit
    ends as every interrupted cell does, with tracking.runs.Interrupted (KILLED, exit 143)."""
    try:
        yield
    except SIGTERMException:
        raise interrupted(signal.SIGTERM) from None


def _fit_frozen(strategy, task, backbone, datamodule, hp, *, size, seed, accelerator, num_workers, logger,
                feature_cache) -> TrainResult:
    """A strategy's own fit (no Lightning loop): test metrics go to `logger` as Lightning's test loop would log them."""
    outcome = strategy.fit(task, backbone, datamodule.fold, hp, size=size, seed=seed, accelerator=accelerator,
                           num_workers=num_workers, cache_dir=feature_cache)
    if logger is not None:
        logger.log_metrics({k: v for k, v in outcome.metrics.items() if k.startswith("test/")}, step=0)
    # val/* and the strategy's own numbers (chosen C, feature dimension, cache hits) ride in `metrics`,
    # which the cell logs apart from test/*; nothing is trained, so no epoch was selected.
    return TrainResult(outcome.model, datamodule, {**outcome.metrics, **outcome.extra}, outcome.fit_seconds,
                       outcome.test_seconds, selected_epoch=-1, epochs_trained=0, extra=dict(outcome.extra))


def _fit_and_test(module, datamodule, strategy, hp, selection, *, logger, accelerator, devices, precision,
                  progress_position, callbacks, test: bool = True, resume: Path | None = None) -> TrainResult:
    common = dict(
        accelerator=accelerator,
        precision=precision,
        logger=logger if logger is not None else False,
        # Only the selection callback (into a temporary folder) and a resumable fit's epoch checkpoint write
        # checkpoints; cells export what they need explicitly (pretrain checkpoints).
        enable_checkpointing=resume is not None or any(isinstance(c, ModelCheckpoint) for c in selection),
        enable_model_summary=False,
        log_every_n_steps=1,
        deterministic="warn",
    )
    progress = TransientProgressBar(progress_position)  # no "Epoch 4: 100%" / "Testing" lines left behind
    world = world_size(devices)
    distributed = world > 1
    throughput = throughput_callbacks(train_rows=len(datamodule.fold.train), batch_size=datamodule.batch_size, world=world,
                                      image_size=datamodule.size)
    trainer = L.Trainer(
        max_epochs=int(hp["epochs"]),
        devices=devices,
        # Several devices: spawn the DDP workers from this process. Lightning's default for GPUs,
        # `ddp`, re-runs the whole command once per rank (here: the suite runner, its claims and
        # MLflow runs); with spawn only `fit` is distributed and rank 0's weights come back to this
        # process. Why this trade is right here: README, "Beyond one machine".
        strategy="ddp_spawn" if distributed else "auto",
        sync_batchnorm=sync_batchnorm(accelerator, world),
        # The spawned ranks live on this machine: inside a SLURM job Lightning would otherwise take the
        # job's task count (one task per cell, `medtl benchmark --launcher slurm`) as the world size.
        plugins=[LightningEnvironment()] if distributed else None,
        callbacks=[*strategy.build_callbacks(hp), *selection, progress, *throughput, *(callbacks or []),
                   *(resume_callbacks(resume) if resume is not None else [])],
        num_sanity_val_steps=0,
        **common,
    )
    # A killed fit of this cell left its last epoch: continue from there (tasks.training.resume).
    last = last_checkpoint(resume)
    resumed_from = checkpoint_progress(last) if last is not None else None
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=last, weights_only=False)
    fit_seconds = time.perf_counter() - start
    epochs_trained = trainer.current_epoch
    checkpoint = next((c for c in selection if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint.best_model_path if checkpoint is not None else ""
    selected = int(Path(best).stem) if best else epochs_trained - 1
    if not test:  # a trial: the fit is all it gets (no test row is read)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if not k.startswith("test/")}
        return TrainResult(module, datamodule, metrics, fit_seconds, 0.0, selected, epochs_trained,
                           extra=_resumed(resumed_from))
    if distributed:
        # Test in this process on one device, so every prediction lands in `module.test_outputs`
        # (a DistributedSampler would give each rank a share of the test set).
        trainer = L.Trainer(devices=1, callbacks=[progress], **{**common, "enable_checkpointing": False})
    start = time.perf_counter()
    # ckpt_path loads the selected epoch's weights into `module` before testing, so the returned
    # module (exported by pretraining, timed for throughput) is the tested one.
    results = trainer.test(module, datamodule=datamodule, verbose=False, ckpt_path=best or None, weights_only=True)
    test_seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    return TrainResult(module, datamodule, metrics, fit_seconds, test_seconds, selected, epochs_trained,
                       extra=_resumed(resumed_from))


def _resumed(progress: tuple[int, int] | None) -> dict:
    """For a resumed fit, `result.extra` entries `resumed_from_epoch` (the epoch it continued at: the epochs done
    before the kill) and `resumed_from_step` (the optimizer steps done, the logger's step at the checkpoint)."""
    return {} if progress is None else {"resumed_from_epoch": progress[0], "resumed_from_step": progress[1]}
