"""Metric collections (torchmetrics) in the Medico task's terms, named for what they compute.

Multi-label tasks (ImageCLEF concept detection, Sinha et al.) are scored at a decision threshold
chosen on the validation rows (`choose_threshold`: the one of a 0.05 grid that maximises the
sample-averaged F1 ImageCLEF ranks by), not at a fixed 0.5; the threshold a cell used is logged.

Single-label tasks (keys as logged, after the `val/` or `test/` prefix):

  mcc        multiclass MCC: Gorodkin's R_K statistic on the whole K x K confusion matrix
             (scikit-learn's `matthews_corrcoef`; the ordinary MCC when K = 2). Neither a macro
             nor a micro average of one-vs-rest MCCs.
  f1 rec prec spec acc
             macro: each class one-vs-rest, then the unweighted mean over classes (Hicks et al.
             2018's table); `acc` is the mean of the per-class (TP + TN) / N.
  acc_micro  plain accuracy, correct / N (equal to the micro F1, REC and PREC below).
  auc        macro one-vs-rest AUROC (needs probabilities).
  micro/mcc micro/f1 micro/rec micro/prec micro/spec micro/acc
             micro, as the Medico 2018 organisers scored runs: pool the one-vs-rest counts of all
             classes (TP = sum TP_c, likewise FP, FN, TN), then
                 REC = TP / (TP + FN)   PREC = TP / (TP + FP)   SPEC = TN / (TN + FP)
                 F1 = 2 PREC REC / (PREC + REC)   ACC = (TP + TN) / (TP + FP + FN + TN)
                 MCC = (TP TN - FP FN) / sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN)).
             In single-label data every error is one FP (the predicted class) and one FN (the
             true class), so FP = FN and F1 = REC = PREC = accuracy.
  pos/rec pos/prec pos/f1
             the named positive class one-vs-rest (Rahman's pneumonia recall / precision / F1);
             only when a positive class is given.

A ratio with a zero denominator is 0 (scikit-learn's zero_division=0). Classes that appear in
neither targets nor predictions of an evaluation are left out of the macro means and of the micro
pool (as scikit-learn does with its default labels), so a fold that lacks a rare class is neither
credited with a perfect score on it nor given its N free true negatives.
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


ONE_VS_REST = ("mcc", "f1", "rec", "prec", "spec", "acc")  # what `one_vs_rest` computes from counts
POSITIVE_METRICS = ("rec", "prec", "f1")  # the positive class's row (Rahman)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return numerator / denominator if denominator > 0 else torch.zeros((), dtype=torch.float64)


def one_vs_rest(statistic: str, tp, fp, tn, fn) -> torch.Tensor:
    """One of ONE_VS_REST from (pooled or one class's) confusion counts; 0 where a denominator is 0.

    The Medico 2018 definitions (module docstring); MCC is the binary Matthews coefficient of the
    2 x 2 table [[TN, FP], [FN, TP]].
    """
    tp, fp, tn, fn = (torch.as_tensor(v, dtype=torch.float64) for v in (tp, fp, tn, fn))
    if statistic == "rec":
        value = _ratio(tp, tp + fn)
    elif statistic == "prec":
        value = _ratio(tp, tp + fp)
    elif statistic == "spec":
        value = _ratio(tn, tn + fp)
    elif statistic == "acc":
        value = _ratio(tp + tn, tp + fp + tn + fn)
    elif statistic == "f1":
        value = _ratio(2 * tp, 2 * tp + fp + fn)  # = 2 PREC REC / (PREC + REC), 0 when TP = 0
    elif statistic == "mcc":
        value = _ratio(tp * tn - fp * fn, torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    else:
        raise ValueError(f"Unknown one-vs-rest statistic {statistic!r}. Valid: {', '.join(ONE_VS_REST)}.")
    return value.float()


class MicroOneVsRest(MulticlassStatScores):
    """A Medico 2018 micro statistic: per-class one-vs-rest counts pooled over the classes present.

    torchmetrics' `average="micro"` pools over every class, also one absent from targets and
    predictions (whose N true negatives would inflate SPEC, ACC and MCC), and has no micro MCC or
    one-vs-rest ACC; so the counts are kept per class (its `average=None` state) and pooled here.
    """

    def __init__(self, num_classes: int, statistic: str, **kwargs) -> None:
        if statistic not in ONE_VS_REST:
            raise ValueError(f"Unknown one-vs-rest statistic {statistic!r}. Valid: {', '.join(ONE_VS_REST)}.")
        super().__init__(num_classes=num_classes, average=None, **kwargs)
        self.statistic = statistic

    def compute(self) -> torch.Tensor:
        present = (self.tp + self.fp + self.fn) > 0
        return one_vs_rest(self.statistic, *(s[present].sum() for s in (self.tp, self.fp, self.tn, self.fn)))


class PositiveClassMetric(MulticlassStatScores):
    """Recall, precision or F1 of one class against the rest (scikit-learn's
    `precision_recall_fscore_support(..., labels=[positive], zero_division=0)`)."""

    def __init__(self, num_classes: int, positive: int, statistic: str, **kwargs) -> None:
        super().__init__(num_classes=num_classes, average=None, **kwargs)
        self.positive, self.statistic = int(positive), statistic

    def compute(self) -> torch.Tensor:
        i = self.positive
        return one_vs_rest(self.statistic, self.tp[i], self.fp[i], self.tn[i], self.fn[i])


def positive_index(meta: TaskMeta, positive_class: str | int | None) -> int | None:
    """The class id of `positive_class` (a class name or id of `meta`), None when none is named."""
    if positive_class is None:
        return None
    names = meta.class_names
    if meta.kind == "multilabel":
        raise ValueError(f"{meta.name} is a multi-label task; a positive class applies to single-label tasks only. "
                         "Fix: remove target.positive_class from the suite.")
    if isinstance(positive_class, (int, np.integer)) and not isinstance(positive_class, bool):
        if 0 <= int(positive_class) < len(names):
            return int(positive_class)
        raise ValueError(f"Positive class id {positive_class} is outside 0..{len(names) - 1} for {meta.name} "
                         f"(classes: {', '.join(names)}). Fix: name one of those classes or give its id.")
    if positive_class in names:
        return names.index(positive_class)
    raise ValueError(f"Positive class {positive_class!r} is not one of the classes of {meta.name}: "
                     f"{', '.join(names)}. Fix: set the positive class to one of them (name or id).")


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


def classification_metrics(meta: TaskMeta, threshold: float = DEFAULT_THRESHOLD, *,
                           positive_class: str | int | None = None, auc: bool = True) -> MetricCollection:
    """Scalar metrics for `meta`'s kind; inputs are probabilities (N, C) and targets (single-label
    metrics also take predicted class ids (N,), without `auc`). `threshold` is the multi-label decision
    threshold (AUC does not use one; single-label tasks take the argmax). A single-label task with a
    `positive_class` (name or id) also gets `pos/rec`, `pos/prec`, `pos/f1` for that class."""
    c, t = meta.num_classes, float(threshold)
    positive = positive_index(meta, positive_class)
    if meta.kind == "multilabel":
        return MetricCollection(
            {
                "mcc": MultilabelMatthewsCorrCoef(num_labels=c, threshold=t),
                "f1": MultilabelF1Score(num_labels=c, average="macro", threshold=t),
                "rec": MultilabelRecall(num_labels=c, average="macro", threshold=t),
                "prec": MultilabelPrecision(num_labels=c, average="macro", threshold=t),
                "spec": MultilabelSpecificity(num_labels=c, average="macro", threshold=t),
                "acc": MultilabelAccuracy(num_labels=c, average="macro", threshold=t),
                **({"auc": MultilabelAUROC(num_labels=c, average="macro")} if auc else {}),
                "f1_samples": SampleF1(threshold=t),
            }
        )
    metrics = {
        "mcc": MatthewsCorrCoef(num_classes=c),
        "f1": MulticlassF1Score(num_classes=c, average="macro"),
        "rec": MulticlassRecall(num_classes=c, average="macro"),
        "prec": MulticlassPrecision(num_classes=c, average="macro"),
        "spec": MulticlassSpecificity(num_classes=c, average="macro"),
        "acc": OneVsRestAccuracy(num_classes=c),
        "acc_micro": MulticlassAccuracy(num_classes=c, average="micro"),
        **({"auc": MulticlassAUROC(num_classes=c, average="macro")} if auc else {}),
        **{f"micro/{name}": MicroOneVsRest(num_classes=c, statistic=name) for name in ONE_VS_REST},
    }
    if positive is not None:
        metrics.update({f"pos/{name}": PositiveClassMetric(c, positive, name) for name in POSITIVE_METRICS})
    return MetricCollection(metrics)


def confusion_matrix_metric(meta: TaskMeta) -> MulticlassConfusionMatrix | None:
    """Rows are true classes, columns predicted (scikit-learn's convention)."""
    return None if meta.kind == "multilabel" else MulticlassConfusionMatrix(num_classes=meta.num_classes)


def score(probs: torch.Tensor, targets: torch.Tensor, meta: TaskMeta, prefix: str = "test/",
          threshold: float = DEFAULT_THRESHOLD, positive_class: str | int | None = None,
          ) -> tuple[dict[str, float], torch.Tensor | None]:
    """The cells' metrics (and confusion matrix) for given probabilities, without a model: ensembles,
    chance floors and feature strategies score with exactly what a trained cell's test step uses
    (macro and micro rows; the positive class's row when `positive_class` names one)."""
    metrics = classification_metrics(meta, threshold, positive_class=positive_class).clone(prefix=prefix)
    target = targets.int() if meta.kind == "multilabel" else targets.long()
    metrics.update(probs.float(), target)
    confmat = confusion_matrix_metric(meta)
    if confmat is not None:
        confmat.update(probs.argmax(dim=1), target)
    return {k: float(v) for k, v in metrics.compute().items()}, (confmat.compute() if confmat is not None else None)
