"""Multi-label cells (Sinha et al.): the decision threshold is chosen on validation rows, scored as ImageCLEF does."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from backbones import create_backbone
from tasks.data import TaskMeta
from tasks.training import Machine, TrainPlan, get_strategy, train_and_test
from tasks.training.metrics import THRESHOLDS, choose_threshold, classification_metrics
from tests.tasks.training.multilabel_tasks import bands_task


def _sklearn_samples_f1(targets, probs, t):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f1_score(targets, (probs >= t).astype(int), average="samples", zero_division=0)


def test_chosen_threshold_is_the_grid_argmax_of_scikit_learn_sample_f1():
    rng = np.random.default_rng(3)
    targets = (rng.random((120, 5)) < 0.2).astype(int)
    # Under-confident scores: the positives sit around 0.3, so 0.5 is far from the best threshold.
    probs = np.clip(targets * 0.3 + rng.random((120, 5)) * 0.25, 0, 1)
    scores = [_sklearn_samples_f1(targets, probs, t) for t in THRESHOLDS]
    chosen = choose_threshold(probs, targets)
    assert _sklearn_samples_f1(targets, probs, chosen) == pytest.approx(max(scores))
    assert chosen < 0.5 and max(scores) > _sklearn_samples_f1(targets, probs, 0.5) + 0.1
    # Every thresholded metric of the collection decides at the threshold it is given.
    meta = TaskMeta("t", tuple(f"c{i}" for i in range(5)), "multilabel")
    metrics = classification_metrics(meta, chosen)
    metrics.update(torch.tensor(probs, dtype=torch.float32), torch.tensor(targets))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = metrics.compute()
        macro = f1_score(targets, (probs >= chosen).astype(int), average="macro", zero_division=0)
    assert float(values["f1_samples"]) == pytest.approx(_sklearn_samples_f1(targets, probs, chosen), abs=1e-6)
    assert float(values["f1"]) == pytest.approx(macro, abs=1e-6)


def test_a_flat_curve_keeps_one_half():
    targets = np.ones((4, 2), dtype=int)
    assert choose_threshold(np.full((4, 2), 0.99), targets) == 0.5
    assert choose_threshold(np.zeros((0, 2)), np.zeros((0, 2))) == 0.5


def test_a_trained_multilabel_cell_tests_at_its_validation_threshold():
    task = bands_task(72)
    torch.manual_seed(0)
    hp = get_strategy("full").resolve({"epochs": 2, "batch_size": 16, "select": "last"})
    result = train_and_test(task, create_backbone("smallcnn", "scratch"), TrainPlan(fold=0, k=3, seed=0, hp=hp, size=32), Machine(accelerator="cpu"))
    module, fold = result.module, result.datamodule.fold
    # Recompute the validation probabilities of the tested weights: the threshold is their argmax, no test row involved.
    module.eval()
    with torch.no_grad():
        # As the module sees them: the tensor-store pipeline normalises its uint8 batches on the device.
        batches = [result.datamodule.device_transform(b, training=False) for b in result.datamodule.val_dataloader()]
        val_probs = torch.cat([module.probabilities(module(x)) for x, _ in batches]).numpy()
        val_targets = torch.cat([y for _, y in batches]).numpy()
    assert len(fold.val) == len(val_probs) > 0
    assert module.threshold == choose_threshold(val_probs, val_targets)
    probs, targets = (t.numpy() for t in module.test_predictions())
    assert result.metrics["test/f1_samples"] == pytest.approx(_sklearn_samples_f1(targets, probs, module.threshold), abs=1e-5)
