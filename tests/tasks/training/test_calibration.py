"""Calibration: ECE against a reference and a worked example, Brier and NLL against scikit-learn,
temperature scaling that never worsens validation NLL, logits of a fitted cell.

    PYTHONPATH=. .venv/bin/python -m pytest tests/tasks/training/test_calibration.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import brier_score_loss, log_loss
from torch.utils.data import DataLoader, TensorDataset

from tasks.training import Machine, TrainPlan, calibration
from tasks.training.calibration import (
    brier,
    calibration_metrics,
    ece,
    fit_temperature,
    logits_from_probabilities,
    nll,
    predict_logits,
    reliability_table,
)


def _reference_ece(probs: np.ndarray, targets: np.ndarray, bins: int) -> float:
    """Equal-mass top-label ECE written out: sizes N // B, the first N % B bins one larger."""
    confidence, correct = probs.max(1), probs.argmax(1) == targets
    order = np.argsort(confidence, kind="stable")
    n = len(order)
    sizes = [n // bins + (1 if b < n % bins else 0) for b in range(bins)]
    total, start = 0.0, 0
    for size in sizes:
        members = order[start:start + size]
        start += size
        total += size / n * abs(correct[members].mean() - confidence[members].mean())
    return total


def _classifier_scores(n: int, classes: int, seed: int, sharpness: float = 1.0):
    """Logits and targets drawn from softmax(logits): calibrated at sharpness 1, over/underconfident otherwise."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, classes))
    targets = np.array([rng.choice(classes, p=p) for p in softmax(logits, axis=1)])
    return logits * sharpness, targets


# --- ECE, Brier, NLL ------------------------------------------------------------------------------------------

def test_a_worked_binary_example():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    targets = np.array([0, 0, 1, 1])
    # Confidences 0.9 (right), 0.8 (wrong), 0.6 (wrong), 0.7 (right). Two equal-mass bins:
    # {0.6, 0.7}: confidence 0.65, accuracy 0.5; {0.8, 0.9}: confidence 0.85, accuracy 0.5.
    assert ece(probs, targets, bins=2) == pytest.approx(0.5 * 0.15 + 0.5 * 0.35)
    # Squared errors per image over both columns: 0.02, 1.28, 0.72, 0.18.
    assert brier(probs, targets) == pytest.approx(2.2 / 4)
    assert brier(probs, targets) == pytest.approx(2 * brier_score_loss(targets, y_proba=probs[:, 1]))
    assert brier(probs, targets) == pytest.approx(brier_score_loss(targets, y_proba=probs[:, 1], scale_by_half=False))
    assert brier(probs[:, 1], targets) == brier(probs, targets)  # a 1-D array is the positive class
    assert nll(probs, targets) == pytest.approx(-np.mean(np.log([0.9, 0.2, 0.4, 0.7])))
    table = reliability_table(probs, targets, bins=2)
    np.testing.assert_allclose(table[["confidence", "accuracy", "count"]].to_numpy(float), [[0.65, 0.5, 2], [0.85, 0.5, 2]])


@pytest.mark.parametrize("n, classes, bins", [(103, 4, 15), (150, 3, 15), (40, 2, 10), (7, 5, 15)])
def test_ece_equals_a_reference_on_fixed_inputs(n, classes, bins):
    rng = np.random.default_rng(n)
    probs = rng.dirichlet(np.full(classes, 0.5), size=n)
    targets = rng.integers(0, classes, n)
    assert ece(probs, targets, bins) == pytest.approx(_reference_ece(probs, targets, min(bins, n)), abs=1e-12)
    table = reliability_table(probs, targets, bins)
    assert table["count"].sum() == n and table["count"].max() - table["count"].min() <= 1
    assert table["count"].is_monotonic_decreasing and table["confidence"].is_monotonic_increasing
    if n % bins == 0:  # equal sizes: the same as sorting and cutting into B equal blocks
        confidence = np.sort(probs.max(1), kind="stable").reshape(bins, -1).mean(1)
        np.testing.assert_allclose(table["confidence"], confidence)


def test_a_perfectly_calibrated_binned_model_has_zero_ece():
    # Confidence 0.75 everywhere, right on 3 of every 4 images in each bin.
    probs = np.tile([[0.75, 0.25]], (8, 1))
    targets = np.array([0, 0, 0, 1] * 2)
    assert ece(probs, targets, bins=2) == pytest.approx(0.0)


@pytest.mark.parametrize("classes", [2, 3, 6])
def test_brier_and_nll_equal_scikit_learn(classes):
    rng = np.random.default_rng(classes)
    logits = rng.normal(size=(50, classes)) * 3
    probs, targets = softmax(logits, axis=1), rng.integers(0, classes, 50)
    labels = list(range(classes))
    assert brier(probs, targets) == pytest.approx(
        brier_score_loss(targets, y_proba=probs, labels=labels, scale_by_half=False))
    assert nll(probs, targets) == pytest.approx(log_loss(targets, y_proba=probs, labels=labels))
    assert nll(logits, targets, logits=True) == pytest.approx(log_loss(targets, y_proba=probs, labels=labels))
    # A zero probability on the target is clipped as scikit-learn clips it, not infinite.
    hard = np.eye(classes)[(targets + 1) % classes]
    assert nll(hard, targets) == pytest.approx(log_loss(targets, y_proba=hard, labels=labels))


def test_multilabel_scores_are_the_mean_of_per_label_binary_scores():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(40, 3)) * 2
    probs, targets = 1 / (1 + np.exp(-logits)), (rng.random((40, 3)) < 0.4).astype(np.float32)
    per_label = [(targets[:, j], probs[:, j]) for j in range(3)]
    assert brier(probs, targets, multilabel=True) == pytest.approx(
        np.mean([2 * brier_score_loss(y, y_proba=p) for y, p in per_label]))
    assert nll(probs, targets, multilabel=True) == pytest.approx(np.mean([log_loss(y, y_proba=p, labels=[0, 1]) for y, p in per_label]))
    assert nll(logits, targets, logits=True, multilabel=True) == pytest.approx(nll(probs, targets, multilabel=True))
    assert ece(probs, targets, 4, multilabel=True) == pytest.approx(
        np.mean([_reference_ece(np.stack([1 - p, p], 1), y, 4) for y, p in per_label]))


# --- temperature scaling ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sharpness, direction", [(3.0, "up"), (0.3, "down"), (1.0, "near one")])
def test_temperature_scaling_never_worsens_validation_nll(sharpness, direction):
    logits, targets = _classifier_scores(400, 4, seed=int(sharpness * 10), sharpness=sharpness)
    temperature = fit_temperature(logits, targets)
    before, after = nll(logits, targets, logits=True), nll(logits / temperature, targets, logits=True)
    assert after <= before
    if direction == "up":  # overconfident: T > 1 softens, and helps a lot
        assert temperature > 2 and after < before - 0.1
    elif direction == "down":  # underconfident: T < 1 sharpens
        assert temperature < 0.5 and after < before - 0.1
    else:
        assert 0.7 < temperature < 1.4


@pytest.mark.parametrize("seed", range(12))
def test_temperature_scaling_never_worsens_validation_nll_on_random_models(seed):
    rng = np.random.default_rng(seed)
    n, classes = int(rng.integers(3, 60)), int(rng.integers(2, 6))
    logits, targets = rng.normal(scale=rng.uniform(0.1, 5), size=(n, classes)), rng.integers(0, classes, n)
    temperature = fit_temperature(logits, targets)
    assert nll(logits / temperature, targets, logits=True) <= nll(logits, targets, logits=True)
    assert calibration.TEMPERATURE_BOUNDS[0] <= temperature <= calibration.TEMPERATURE_BOUNDS[1]


def test_a_temperature_that_does_not_lower_validation_nll_falls_back_to_one(monkeypatch):
    assert fit_temperature(np.zeros((30, 3)), np.arange(30) % 3) == 1.0  # flat logits: NLL is the same at every T
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0)) == 1.0  # no validation rows
    logits, targets = _classifier_scores(300, 3, seed=1)

    class Found:
        x = np.log(8.0)  # an optimiser gone wrong: T = 8 on a calibrated model

    monkeypatch.setattr(calibration.optimize, "minimize_scalar", lambda *a, **k: Found())
    assert nll(logits / 8.0, targets, logits=True) > nll(logits, targets, logits=True)
    assert fit_temperature(logits, targets) == 1.0


def test_calibration_metrics_before_and_after_scaling():
    val_logits, val_targets = _classifier_scores(300, 3, seed=2, sharpness=4.0)
    test_logits, test_targets = _classifier_scores(200, 3, seed=3, sharpness=4.0)
    out = calibration_metrics(val_logits, val_targets, test_logits, test_targets, bins=10)
    assert set(out) == {"test/ece", "test/brier", "test/nll", "test/ece_ts", "test/brier_ts", "test/nll_ts",
                        "calibration/temperature", "calibration/val_nll", "calibration/val_nll_ts"}
    t = out["calibration/temperature"]
    assert t == pytest.approx(fit_temperature(val_logits, val_targets))
    test_probs = softmax(test_logits, axis=1)
    assert out["test/nll"] == pytest.approx(log_loss(test_targets, y_proba=test_probs, labels=[0, 1, 2]))
    assert out["test/ece"] == pytest.approx(_reference_ece(test_probs, test_targets, 10))
    assert out["test/brier_ts"] == pytest.approx(brier(softmax(test_logits / t, axis=1), test_targets))
    # Four times too sharp: scaling fit on other rows of the same model fixes the test rows too.
    assert out["test/nll_ts"] < out["test/nll"] and out["test/ece_ts"] < out["test/ece"]
    assert out["calibration/val_nll_ts"] <= out["calibration/val_nll"]


def test_log_probabilities_scale_exactly_as_logits():
    logits, _ = _classifier_scores(20, 4, seed=4)
    recovered = logits_from_probabilities(softmax(logits, axis=1))
    np.testing.assert_allclose(softmax(recovered / 1.7, axis=1), softmax(logits / 1.7, axis=1), atol=1e-12)
    z = np.random.default_rng(0).normal(size=(10, 3))
    np.testing.assert_allclose(logits_from_probabilities(1 / (1 + np.exp(-z)), multilabel=True), z, atol=1e-9)


# --- logits of a fitted cell -----------------------------------------------------------------------------------------

def test_predict_logits_runs_the_module_in_eval_mode_and_restores_its_mode():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3)).train()
    x, y = torch.randn(10, 4), torch.arange(10) % 3
    logits, targets = predict_logits(module, DataLoader(TensorDataset(x, y), batch_size=4))
    assert module.training
    module.eval()
    np.testing.assert_allclose(logits, module(x).detach().numpy(), atol=1e-6)  # no dropout: eval mode
    np.testing.assert_array_equal(targets, y.numpy())


@pytest.fixture(scope="module")
def task():
    from tasks.data import load_task

    return load_task("gen-target", None, scale=0.5, size=32)


def _cell(task, name, tmp_path, **overrides):
    from backbones import create_backbone
    from tasks.training import get_strategy, train_and_test

    torch.manual_seed(0)
    hp = get_strategy(name).resolve({"epochs": 2, "batch_size": 16, **overrides})
    return train_and_test(task, create_backbone("smallcnn", "scratch"), TrainPlan(fold=0, k=3, seed=0, hp=hp, size=32, strategy=name), Machine(accelerator="cpu", feature_cache=tmp_path))


def test_a_trained_cell_gives_the_logits_of_its_tested_weights(task, tmp_path):
    result = _cell(task, "linear", tmp_path)
    dm, module = result.datamodule, result.module
    assert result.extra["pipeline"] == "device"  # batches are normalised on the device: the transform must apply
    logits, targets = predict_logits(module, dm.test_dataloader(), transform=dm.device_transform)
    probs, tested_targets = (t.numpy() for t in module.test_predictions())
    np.testing.assert_allclose(softmax(logits, axis=1), probs, atol=1e-5)  # the weights that were tested
    np.testing.assert_array_equal(targets, tested_targets)
    val_logits, val_targets = predict_logits(module, dm.val_dataloader(), transform=dm.device_transform)
    assert len(val_logits) == len(dm.fold.val) and np.array_equal(val_targets, task.labels[dm.fold.val])

    out = calibration.cell_calibration(result, bins=5)
    labels = list(range(task.meta.num_classes))
    assert out["test/nll"] == pytest.approx(log_loss(tested_targets, y_proba=probs, labels=labels), rel=1e-4)
    assert out["calibration/val_nll"] == pytest.approx(nll(val_logits, val_targets, logits=True), rel=1e-4)
    assert out["calibration/val_nll_ts"] <= out["calibration/val_nll"]


def test_a_frozen_cell_is_calibrated_from_its_validation_probabilities(task, tmp_path):
    result = _cell(task, "knn", tmp_path, knn_k=5)
    val_probs, val_targets = result.module.validation_predictions()
    assert len(val_probs) == len(result.datamodule.fold.val) and np.array_equal(val_targets, task.labels[result.datamodule.fold.val])
    out = calibration.cell_calibration(result, bins=5)
    labels = list(range(task.meta.num_classes))
    probs, targets = (t.numpy() for t in result.module.test_predictions())
    assert out["test/brier"] == pytest.approx(brier_score_loss(targets, y_proba=probs, labels=labels, scale_by_half=False), rel=1e-5)
    assert out["calibration/val_nll"] == pytest.approx(log_loss(val_targets, y_proba=val_probs, labels=labels), rel=1e-6)
    assert out["calibration/val_nll_ts"] <= out["calibration/val_nll"] and np.isfinite(out["test/nll_ts"])
