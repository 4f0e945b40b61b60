"""Resuming a fit from its last epoch checkpoint (tasks/training/resume.py) gives the uninterrupted fit's numbers.

    .venv/bin/python -m pytest tests/tasks/training/test_resume.py -q

In-process: a callback stops the fit (an exception, as a kill would, after the epoch checkpoint of the
previous epoch), a fresh module and backbone (as a rerun builds them) resume from the folder. The subprocess
SIGKILL version of this is tests/benchmark/test_resume_mid_fit.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from backbones import create_backbone
from tasks.data import Task, TaskMeta, make_index
from tasks.data.images import ArrayStore
from tasks.training import Machine, TrainPlan, get_strategy, train_and_test


class Killed(RuntimeError):
    pass


class StopAt(Callback):
    """Stop the fit at the start of epoch `epoch` (its previous epoch's checkpoint is written)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise Killed(f"stopped at epoch {self.epoch}")


class ValHistory(Callback):
    def __init__(self) -> None:
        self.scores: dict[int, float] = {}

    def on_validation_end(self, trainer, pl_module) -> None:
        self.scores[trainer.current_epoch] = float(trainer.callback_metrics["val/loss"])


def _noisy_task(n: int = 150) -> Task:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    images = np.clip(rng.normal(60 + 60 * labels[:, None, None], 40, (n, 32, 32)), 0, 255).astype(np.uint8)
    return Task(TaskMeta("noisy", ("a", "b", "c"), "multiclass"), make_index(range(n), labels), ArrayStore(images))


def _fit(task, strategy: str, hp: dict, folder, pipeline: str, callbacks=()):
    torch.manual_seed(0)
    plan = TrainPlan(fold=0, k=3, seed=0, hp=get_strategy(strategy).resolve({"batch_size": 16, **hp}), size=32,
                     strategy=strategy)
    machine = Machine(accelerator="cpu", pipeline=pipeline, resume_dir=folder)
    return train_and_test(task, create_backbone("smallcnn"), plan, machine, callbacks=list(callbacks))


@pytest.mark.slow
@pytest.mark.parametrize("strategy, hp, pipeline, stop", [
    # Augmentations drawn per image by albumentations (its own generators) and the sampler's generator;
    # a cosine schedule with warm-up, early stopping and best-epoch selection all carry state across the kill.
    ("full", {"epochs": 5, "augment": "light", "select": "mcc", "patience": 3, "schedule": "cosine",
              "warmup_epochs": 1, "dropout": 0.3}, "cpu", 2),
    # Batch augmentation on the device draws from torch's global generator.
    ("full", {"epochs": 4, "augment": "light", "select": "loss"}, "device", 2),
    # Layer-wise: killed inside its second phase (the first group was unfrozen at epoch 1).
    ("layerwise", {"epochs": 4, "unfreeze_every": 1, "select": "mcc"}, "cpu", 2),
])
def test_a_fit_stopped_and_resumed_ends_as_the_uninterrupted_fit(tmp_path, strategy, hp, pipeline, stop):
    task = _noisy_task()
    whole = ValHistory()
    reference = _fit(task, strategy, hp, tmp_path / "whole", pipeline, [whole])
    assert "resumed_from_epoch" not in reference.extra
    with pytest.raises(Killed):
        _fit(task, strategy, hp, tmp_path / "killed", pipeline, [StopAt(stop)])
    assert (tmp_path / "killed" / "last.ckpt").is_file()
    after = ValHistory()
    resumed = _fit(task, strategy, hp, tmp_path / "killed", pipeline, [after])
    assert resumed.extra["resumed_from_epoch"] == stop
    assert sorted(after.scores) == list(range(stop, reference.epochs_trained))  # only the epochs after the kill ran
    for epoch, score in after.scores.items():
        assert score == pytest.approx(whole.scores[epoch], abs=1e-6), epoch
    assert resumed.selected_epoch == reference.selected_epoch and resumed.epochs_trained == reference.epochs_trained
    tested = {k: v for k, v in reference.metrics.items() if k.startswith("test/") and "seconds" not in k and "fps" not in k}
    assert tested and {k: resumed.metrics[k] for k in tested} == pytest.approx(tested, abs=1e-6)
