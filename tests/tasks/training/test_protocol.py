"""The training protocol: model selection on validation rows, schedules, and what reaches training.

    .venv/bin/python -m pytest tests/tasks/training/test_protocol.py -q
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from backbones import create_backbone
from tasks.data import Task, TaskMeta, load_task, make_index
from tasks.data.images import ArrayStore
from tasks.training import Machine, TrainPlan, get_strategy, train_and_test
from tasks.training.schedules import step_milestones


def _fit(task, *, backbone="smallcnn", size=32, callbacks=None, logger=None, fraction=1.0, **overrides):
    torch.manual_seed(0)
    hp = get_strategy("full").resolve({"batch_size": 16, **overrides})
    return train_and_test(task, create_backbone(backbone), TrainPlan(fold=0, k=3, seed=0, hp=hp, size=size, fraction=fraction), Machine(accelerator="cpu"), callbacks=callbacks, logger=logger)


class ZeroHeadBeforeLastValidation(Callback):
    """Sabotage: the last epoch's weights predict one class for everything, so it validates worst."""

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == trainer.max_epochs - 1:
            with torch.no_grad():
                pl_module.head[1].weight.zero_()
                pl_module.head[1].bias.zero_()


def _bright_or_dark(n: int = 240) -> Task:
    """Two classes a network learns in one epoch (enough steps for BatchNorm statistics to settle)."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    images = np.clip(rng.normal(60 + 140 * labels[:, None, None], 25, (n, 32, 32)), 0, 255).astype(np.uint8)
    return Task(TaskMeta("bright", ("dark", "bright"), "binary"), make_index(range(n), labels), ArrayStore(images))


def test_the_tested_weights_are_the_selected_epochs():
    task = _bright_or_dark()
    selected = _fit(task, epochs=3, select="mcc", callbacks=[ZeroHeadBeforeLastValidation()])
    assert selected.selected_epoch < 2 and selected.epochs_trained == 3
    assert selected.module.head[1].weight.abs().sum() > 0  # the module holds the tested (selected) weights
    probs, _ = selected.module.test_predictions()
    assert len(set(probs.argmax(1).tolist())) > 1
    last = _fit(task, epochs=3, select="last", callbacks=[ZeroHeadBeforeLastValidation()])
    assert last.selected_epoch == 2 and last.module.head[1].weight.abs().sum() == 0
    assert last.metrics["test/mcc"] == 0.0 < selected.metrics["test/mcc"]


def _row_coded_task(n: int = 120) -> Task:
    """Every image is uniform grey at its row number, so a training batch says which rows it holds."""
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 16, 1).repeat(16, 2)
    labels = np.arange(n) % 3
    return Task(TaskMeta("coded", ("a", "b", "c"), "multiclass"), make_index(range(n), labels), ArrayStore(images))


class RecordTrainingRows(Callback):
    def __init__(self) -> None:
        self.rows: set[int] = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        x = batch[0][:, 0, 0, 0] * 0.5 + 0.5  # undo the 0.5/0.5 normalisation of smallcnn
        self.rows |= set(torch.round(x * 255).int().tolist())


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_no_validation_or_test_row_reaches_training(fraction):
    record = RecordTrainingRows()
    result = _fit(_row_coded_task(), epochs=2, augment="none", select="mcc", callbacks=[record], size=32,
                  fraction=fraction)
    fold = result.datamodule.fold
    assert record.rows == set(fold.train.tolist())
    assert not record.rows & (set(fold.val.tolist()) | set(fold.test.tolist()))


def _lr_curve(tmp_path, epochs: int, **overrides) -> tuple[list[float], list[float]]:
    logger = CSVLogger(tmp_path, name="lr")
    _fit(load_task("gen-target", None, scale=0.5, size=32), epochs=epochs, lr=0.1, optimizer="sgd", logger=logger,
         **overrides)
    frame = pd.read_csv(f"{logger.log_dir}/metrics.csv")
    lr = frame.dropna(subset=["lr"]).sort_values("epoch")["lr"].tolist()
    val_loss = frame.dropna(subset=["val/loss"]).sort_values("epoch")["val/loss"].tolist()
    return lr, val_loss


def test_no_schedule_keeps_the_learning_rate(tmp_path):
    lr, _ = _lr_curve(tmp_path, 4, schedule="none")
    assert lr == pytest.approx([0.1] * 4)


def test_step_schedule_drops_at_half_and_three_quarters(tmp_path):
    lr, _ = _lr_curve(tmp_path, 8, schedule="step")
    assert step_milestones(8) == [4, 6]
    assert lr == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)


def test_cosine_schedule_warms_up_linearly_then_anneals(tmp_path):
    lr, _ = _lr_curve(tmp_path, 8, schedule="cosine", warmup_epochs=2)
    expected = [0.01, 0.055] + [0.05 * (1 + math.cos(math.pi * k / 6)) for k in range(6)]
    assert lr == pytest.approx(expected, rel=1e-6)


def test_plateau_schedule_follows_the_validation_loss(tmp_path):
    lr, val_loss = _lr_curve(tmp_path, 8, schedule="plateau")
    # Replay torch's own rule on the losses that were logged: the lr read back must be what it gives.
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    rule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=2)
    expected = []
    for loss in val_loss:
        expected.append(optimizer.param_groups[0]["lr"])
        rule.step(loss)
    assert lr == pytest.approx(expected)


class ZeroHeadBeforeEveryValidation(Callback):
    """Every validation sees uniform logits: the loss is exactly ln(C) each epoch, never improving."""

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        with torch.no_grad():
            pl_module.head[1].weight.zero_()
            pl_module.head[1].bias.zero_()


def test_early_stopping_ends_the_fit_after_patience_epochs_without_improvement():
    result = _fit(load_task("gen-target", None, scale=0.5, size=32), epochs=10, select="loss", patience=2,
                  callbacks=[ZeroHeadBeforeEveryValidation()])
    assert result.epochs_trained == 3 and result.selected_epoch == 0
