"""Multi-label class weights: BCE's pos_weight from the training rows reaches the loss (Sinha et al.)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backbones import create_backbone
from tasks.data import TaskDataModule, TaskMeta, multilabel_pos_weight
from tasks.data.datamodule import MAX_POS_WEIGHT
from tasks.training import Machine, TrainPlan, ClassifierModule, get_strategy, train_and_test
from tests.tasks.training.multilabel_tasks import bands_task


def test_pos_weight_is_negatives_over_positives_clipped():
    hot = np.zeros((10, 4))
    hot[:2, 0] = 1  # 8 negatives / 2 positives = 4
    hot[:5, 1] = 1  # 5 / 5 = 1
    hot[:, 3] = 1  # 0 / 10 = 0, clipped up to 1 / max
    # label 2 never occurs: max (no positive term to weigh, and no infinity)
    assert multilabel_pos_weight(hot).tolist() == [4.0, 1.0, MAX_POS_WEIGHT, 1 / MAX_POS_WEIGHT]
    assert multilabel_pos_weight(hot, max_weight=3.0).tolist() == [3.0, 1.0, 3.0, 1 / 3.0]


def test_datamodule_weighs_each_label_by_its_training_rows():
    task = bands_task(60)
    dm = TaskDataModule(task, fold=0, k=3, seed=0, size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    weights = dm.class_weights()
    hot = np.zeros((len(dm.fold.train), 3))
    for i, labels in enumerate(task.index["labels"].iloc[dm.fold.train]):
        hot[i, list(labels)] = 1
    positives = hot.sum(0)
    assert weights.tolist() == pytest.approx(((len(hot) - positives) / positives).tolist())
    assert not torch.allclose(weights, torch.ones(3))  # the bands task is unbalanced: not a no-op


def test_pos_weight_reaches_the_bce_loss():
    meta = TaskMeta("bands", ("left", "middle", "right"), "multilabel")
    pos_weight = torch.tensor([4.0, 0.5, 2.0])
    torch.manual_seed(0)
    logits, targets = torch.randn(8, 3), (torch.rand(8, 3) < 0.4).int()
    weighted = ClassifierModule(create_backbone("smallcnn", "scratch"), meta, class_weights=pos_weight)
    assert torch.equal(weighted.class_weights, pos_weight)
    expected = nn.BCEWithLogitsLoss(pos_weight=pos_weight)(logits, targets.float())
    assert weighted._loss(logits, targets) == pytest.approx(float(expected), abs=1e-6)
    plain = ClassifierModule(create_backbone("smallcnn", "scratch"), meta)
    unweighted = nn.BCEWithLogitsLoss()(logits, targets.float())
    assert plain._loss(logits, targets) == pytest.approx(float(unweighted), abs=1e-6)
    assert abs(float(expected) - float(unweighted)) > 1e-3


@pytest.mark.parametrize("class_weighted", [True, False])
def test_a_multilabel_cell_trains_with_its_folds_pos_weight(class_weighted):
    task = bands_task(48)
    hp = get_strategy("full").resolve({"epochs": 1, "batch_size": 16, "select": "last",
                                       "class_weighted": class_weighted})
    result = train_and_test(task, create_backbone("smallcnn", "scratch"), TrainPlan(fold=0, k=3, seed=0, hp=hp, size=32), Machine(accelerator="cpu"))
    expected = result.datamodule.class_weights() if class_weighted else torch.ones(3)
    assert torch.equal(result.module.class_weights, expected)
