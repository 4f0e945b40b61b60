"""Evaluation of a tested model's predictions: pure functions that return DataFrames.

The benchmark layer decides where they go (MLflow artifacts); these only compute. Single-label
tasks get a per-class report (scikit-learn's `classification_report`); multi-label tasks a 2x2
confusion count per label (a C x C matrix means nothing when an image has several labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, multilabel_confusion_matrix

from tasks.training.metrics import DEFAULT_THRESHOLD


def predicted_labels(probs: np.ndarray, multilabel: bool, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Class ids (single-label) or a boolean (N, C) matrix (multi-label, at the cell's chosen threshold)."""
    return probs >= threshold if multilabel else probs.argmax(axis=1)


def per_class_report(probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, plus the averages (one row each)."""
    names = list(class_names)
    report = classification_report(targets, probs.argmax(axis=1), labels=list(range(len(names))), target_names=names,
                                   output_dict=True, zero_division=0)
    return pd.DataFrame(report).T.rename_axis("class").reset_index()


def per_label_confusion(probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str],
                        threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """tn, fp, fn, tp per label of a multi-label task at `threshold`."""
    names = list(class_names)
    predicted = predicted_labels(probs, multilabel=True, threshold=threshold)
    counts = multilabel_confusion_matrix(targets.astype(int), predicted.astype(int), labels=list(range(len(names))))
    frame = pd.DataFrame(counts.reshape(len(names), 4), columns=["tn", "fp", "fn", "tp"])
    frame.insert(0, "label", names)
    return frame


def predictions_table(items: Sequence, probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str],
                      multilabel: bool, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """One row per test image: item, target(s), prediction(s) and the probability of every class."""
    predicted = predicted_labels(probs, multilabel, threshold)
    if multilabel:
        frame = pd.DataFrame({"item": list(items), "targets": [np.flatnonzero(t).tolist() for t in targets],
                              "predicted": [np.flatnonzero(p).tolist() for p in predicted]})
    else:
        frame = pd.DataFrame({"item": list(items), "target": targets, "predicted": predicted})
    for i, name in enumerate(class_names):
        frame[f"p:{name}"] = probs[:, i].round(6)
    return frame
