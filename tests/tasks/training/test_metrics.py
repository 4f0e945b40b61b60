"""The Medico metrics equal scikit-learn's, including degenerate predictions."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    matthews_corrcoef,
    multilabel_confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
)

from tasks.data.index import TaskMeta
from tasks.training.metrics import classification_metrics, confusion_matrix_metric


def _reference(y, p):
    labels = sorted(set(y) | set(p))  # scikit-learn's default label set for macro averages
    mcm = multilabel_confusion_matrix(y, p, labels=labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "mcc": matthews_corrcoef(y, p),
            "f1": f1_score(y, p, average="macro", zero_division=0),
            "rec": recall_score(y, p, average="macro", zero_division=0),
            "prec": precision_score(y, p, average="macro", zero_division=0),
            "spec": np.mean([tn / (tn + fp) for (tn, fp), _ in mcm]),
            "acc": np.mean([(tn + tp) / (tn + fp + fn + tp) for (tn, fp), (fn, tp) in mcm]),
            "acc_micro": accuracy_score(y, p),
        }


def _ours(y, p, num_classes, probs=None):
    meta = TaskMeta("t", tuple(f"c{i}" for i in range(num_classes)), "multiclass")
    metrics = classification_metrics(meta)
    if probs is None:
        probs = np.eye(num_classes)[p] * 0.8 + 0.2 / num_classes
    metrics.update(torch.tensor(probs, dtype=torch.float32), torch.tensor(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {k: float(v) for k, v in metrics.compute().items()}


CASES = {
    "random": lambda rng: (rng.integers(0, 5, 200), rng.integers(0, 5, 200)),
    "class_never_predicted": lambda rng: (rng.integers(0, 5, 200), rng.integers(0, 4, 200)),
    "class_absent_everywhere": lambda rng: (rng.integers(0, 4, 200), rng.integers(0, 4, 200)),
    "constant_prediction": lambda rng: (rng.integers(0, 5, 200), np.full(200, 2)),
    "perfect": lambda rng: (lambda y: (y, y.copy()))(rng.integers(0, 5, 200)),
    "mostly_right": lambda rng: (lambda y: (y, np.where(rng.random(200) < 0.8, y, rng.integers(0, 5, 200))))(rng.integers(0, 5, 200)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_metrics_equal_scikit_learn(case):
    y, p = CASES[case](np.random.default_rng(7))
    ours, ref = _ours(y, p, 5), _reference(y, p)
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, abs=1e-5), name


def test_binary_task_uses_the_same_definitions():
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 2, 120), rng.integers(0, 2, 120)
    ours, ref = _ours(y, p, 2), _reference(y, p)
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, abs=1e-5), name


@pytest.mark.parametrize("constant", [0, 1])
def test_binary_constant_prediction_scores_zero_mcc(constant):
    # torchmetrics' own MCC gives -0.0745 here (its epsilon edge case); scikit-learn gives 0.
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    p = np.full(9, constant)
    ours, ref = _ours(y, p, 2), _reference(y, p)
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, abs=1e-5), name


def test_auroc_matches_scikit_learn_on_probabilities():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + np.eye(3)[y] * 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ours = _ours(y, probs.argmax(1), 3, probs=probs)
    assert ours["auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-4)


def test_confusion_matrix_rows_are_true_classes():
    meta = TaskMeta("t", ("a", "b", "c"), "multiclass")
    cm = confusion_matrix_metric(meta)
    cm.update(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1]))
    assert cm.compute().tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]


def test_multilabel_sample_f1_equals_scikit_learn():
    # ImageCLEF's score: F1 per image, averaged over images (including images with no label at all).
    rng = np.random.default_rng(5)
    targets = (rng.random((80, 6)) < 0.25).astype(int)
    targets[:5] = 0  # images without any concept
    probs = np.clip(targets * 0.6 + rng.random((80, 6)) * 0.5, 0, 1)
    meta = TaskMeta("t", tuple(f"c{i}" for i in range(6)), "multilabel")
    metrics = classification_metrics(meta)
    metrics.update(torch.tensor(probs, dtype=torch.float32), torch.tensor(targets))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = float(metrics.compute()["f1_samples"])
        reference = f1_score(targets, (probs >= 0.5).astype(int), average="samples", zero_division=0)
    assert ours == pytest.approx(reference, abs=1e-6)
