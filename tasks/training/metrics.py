"""Metric collections (torchmetrics) in the Medico task's terms.

Multi-label tasks (ImageCLEF concept detection, Sinha et al.) are scored at a decision threshold
chosen on the validation rows (`choose_threshold`: the one of a 0.05 grid that maximises the
sample-averaged F1 ImageCLEF ranks by), not at a fixed 0.5; the threshold a cell used is logged.

Single-label tasks: MCC, and F1 / REC / PREC / SPEC / ACC macro-averaged over classes one-vs-rest
(Hicks et al. 2018 report these), plain accuracy (`acc_micro`), macro AUROC and the confusion
matrix. Classes that appear in neither targets nor predictions of an evaluation are left out of
the macro means (as scikit-learn does with its default labels), so a fold that lacks a rare class
is not credited with a perfect score on it.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MulticlassSpecificity,
    MulticlassStatScores,
    MultilabelAccuracy,
    MultilabelAUROC,
    MultilabelF1Score,
    MultilabelMatthewsCorrCoef,
    MultilabelPrecision,
    MultilabelRecall,
    MultilabelSpecificity,
)

import numpy as np

from tasks.data.index import TaskMeta

# Names as the leaderboard prints them, in the Medico table's order.
LEADERBOARD_METRICS = ("mcc", "f1", "rec", "prec", "spec", "acc", "auc")
DEFAULT_THRESHOLD = 0.5  # multi-label decision threshold when no validation rows choose one
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)  # the candidates `choose_threshold` tries


def sample_f1(probs: np.ndarray, targets: np.ndarray, threshold: float) -> float:
    """scikit-learn's f1_score(average="samples", zero_division=0) at `threshold`, vectorised."""
    predicted, truth = probs >= threshold, targets.astype(bool)
    tp = (predicted & truth).sum(1)
    denominator = predicted.sum(1) + truth.sum(1)
    per_image = np.divide(2 * tp, denominator, out=np.zeros(len(probs)), where=denominator > 0)
    return float(per_image.mean()) if len(probs) else 0.0


def choose_threshold(probs: np.ndarray, targets: np.ndarray) -> float:
    """The multi-label decision threshold with the best sample F1 on (validation) `probs`; ties go to
    the candidate nearest 0.5, so a flat curve keeps the conventional value."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    if len(probs) == 0:
        return DEFAULT_THRESHOLD
    scores = np.array([sample_f1(probs, targets, t) for t in THRESHOLDS])
    best = np.flatnonzero(np.isclose(scores, scores.max()))
    return float(THRESHOLDS[best[np.argmin(np.abs(THRESHOLDS[best] - DEFAULT_THRESHOLD))]])


class OneVsRestAccuracy(MulticlassStatScores):
    """Mean over classes of (TP + TN) / N, the Medico task's ACC; torchmetrics has no such average."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(num_classes=num_classes, average=None, **kwargs)

    def compute(self) -> torch.Tensor:
        tp, fp, tn, fn = self.tp.float(), self.fp.float(), self.tn.float(), self.fn.float()
        present = (tp + fp + fn) > 0
        per_class = (tp + tn) / (tp + fp + tn + fn).clamp(min=1)
        return per_class[present].mean() if present.any() else torch.tensor(0.0)


class MatthewsCorrCoef(MulticlassConfusionMatrix):
    """Multiclass MCC as scikit-learn defines it: 0 when predictions or targets are constant.

    torchmetrics' own MCC (1.9) replaces a zero denominator by an epsilon formula in the 2-class
    case, so a model that predicts one class for everything scores -0.07 or +0.07 instead of 0;
    model selection by validation MCC then prefers arbitrary constant predictors.
    """

    def compute(self) -> torch.Tensor:
        cm = self.confmat.double()
        t, p, c, s = cm.sum(1), cm.sum(0), cm.trace(), cm.sum()
        cov_tp = c * s - (t * p).sum()
        cov_pp, cov_tt = s * s - (p * p).sum(), s * s - (t * t).sum()
        if cov_pp * cov_tt == 0:
            return torch.tensor(0.0)
        return (cov_tp / torch.sqrt(cov_pp * cov_tt)).float()


class SampleF1(Metric):
    """Multi-label F1 averaged over images, as ImageCLEF scores concept detection (Sinha et al.):
    scikit-learn's `f1_score(average="samples")`, an image with no true and no predicted label
    scoring 0 (its zero_division). torchmetrics has no sample average."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        predicted, truth = probs >= self.threshold, targets.bool()
        tp = (predicted & truth).sum(1).double()
        denominator = predicted.sum(1).double() + truth.sum(1).double()
        self.total += torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp)).sum()
        self.count += len(probs)

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()


def classification_metrics(meta: TaskMeta, threshold: float = DEFAULT_THRESHOLD) -> MetricCollection:
    """Scalar metrics for `meta`'s kind; inputs are probabilities (N, C) and targets. `threshold`
    is the multi-label decision threshold (AUC does not use one; single-label tasks take the argmax)."""
    c, t = meta.num_classes, float(threshold)
    if meta.kind == "multilabel":
        return MetricCollection(
            {
                "mcc": MultilabelMatthewsCorrCoef(num_labels=c, threshold=t),
                "f1": MultilabelF1Score(num_labels=c, average="macro", threshold=t),
                "rec": MultilabelRecall(num_labels=c, average="macro", threshold=t),
                "prec": MultilabelPrecision(num_labels=c, average="macro", threshold=t),
                "spec": MultilabelSpecificity(num_labels=c, average="macro", threshold=t),
                "acc": MultilabelAccuracy(num_labels=c, average="macro", threshold=t),
                "auc": MultilabelAUROC(num_labels=c, average="macro"),
                "f1_samples": SampleF1(threshold=t),
            }
        )
    return MetricCollection(
        {
            "mcc": MatthewsCorrCoef(num_classes=c),
            "f1": MulticlassF1Score(num_classes=c, average="macro"),
            "rec": MulticlassRecall(num_classes=c, average="macro"),
            "prec": MulticlassPrecision(num_classes=c, average="macro"),
            "spec": MulticlassSpecificity(num_classes=c, average="macro"),
            "acc": OneVsRestAccuracy(num_classes=c),
            "acc_micro": MulticlassAccuracy(num_classes=c, average="micro"),
            "auc": MulticlassAUROC(num_classes=c, average="macro"),
        }
    )


def confusion_matrix_metric(meta: TaskMeta) -> MulticlassConfusionMatrix | None:
    """Rows are true classes, columns predicted (scikit-learn's convention)."""
    return None if meta.kind == "multilabel" else MulticlassConfusionMatrix(num_classes=meta.num_classes)


def score(probs: torch.Tensor, targets: torch.Tensor, meta: TaskMeta, prefix: str = "test/",
          threshold: float = DEFAULT_THRESHOLD) -> tuple[dict[str, float], torch.Tensor | None]:
    """The cells' metrics (and confusion matrix) for given probabilities, without a model: ensembles,
    chance floors and feature strategies score with exactly what a trained cell's test step uses."""
    metrics = classification_metrics(meta, threshold).clone(prefix=prefix)
    target = targets.int() if meta.kind == "multilabel" else targets.long()
    metrics.update(probs.float(), target)
    confmat = confusion_matrix_metric(meta)
    if confmat is not None:
        confmat.update(probs.argmax(dim=1), target)
    return {k: float(v) for k, v in metrics.compute().items()}, (confmat.compute() if confmat is not None else None)
