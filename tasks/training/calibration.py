"""Calibration of a cell's probabilities: ECE, Brier, NLL, before and after temperature scaling.

    >>> calibration_metrics(val_logits, val_targets, test_logits, test_targets)   # numbers a cell logs
    >>> cell_calibration(result)   # the same from a TrainResult (tasks.training.fit.train_and_test)

Definitions (single-label: `probs` (N, C) rows summing to 1, `targets` (N,) class ids; a binary
task is the C = 2 case, and a 1-D `probs` is read as the positive class's probability):

  ece      top-label expected calibration error with EQUAL-MASS bins: each image's confidence is
           its largest probability and it is correct when that class is the target; images are
           sorted by confidence (stable sort) and split into `bins` contiguous groups whose sizes
           differ by at most one, the larger groups first (`np.array_split`; fewer bins than
           images never leaves a bin empty: bins = min(bins, N)); ECE = sum over bins of
           (bin size / N) x |accuracy in bin - mean confidence in bin|. Equal-mass bins (Nixon et
           al. 2019) rather than equal-width: with confident models nearly every image falls in
           the top width bin, and equal-mass bins keep each bin's estimate equally noisy.
  brier    mean over images of the sum over classes of (p_c - 1[c = target])^2 (Brier 1950's
           multi-class score, in [0, 2]); for C = 2 it is twice scikit-learn's binary
           `brier_score_loss` (which scores the positive class only) and equals its
           `scale_by_half=False` form.
  nll      mean over images of -log p_target, probabilities clipped to [eps, 1 - eps] (float64)
           as scikit-learn's `log_loss` does; from logits, -log_softmax(z)_target (no clipping).

Multi-label (`multilabel=True`: `probs` (N, L) per-label sigmoid probabilities, `targets` (N, L)
0/1): each label is scored as a binary task on the columns [1 - p, p] and the L scores are
averaged; logits z become the two-class logits [0, z], so one temperature divides every label.

Temperature scaling (Guo et al. 2017): one T > 0 dividing the logits, fit on validation rows by
minimising NLL over log T in [log 0.05, log 20] (scipy's bounded scalar minimiser); a T that does
not lower the validation NLL (a flat or already calibrated model, or an optimiser tolerance) is
replaced by 1.0, so scaling never worsens validation NLL. Softmax is unchanged by adding a
constant per row, so the log of softmax probabilities serves as logits exactly
(`logits_from_probabilities`): strategies that keep only probabilities (svm, knn, fewshot) are
scaled the same way (for svm, softmax of the margins; for k-NN vote shares, a share of 0 stays
near 0 at any T).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import optimize
from scipy.special import log_softmax, softmax

TEMPERATURE_BOUNDS = (0.05, 20.0)  # wide enough for every model Guo et al. report (T about 1 to 3) and underconfident ones
EPS = np.finfo(np.float64).eps  # probability clipping, as scikit-learn's log_loss clips float64


# --- shapes -----------------------------------------------------------------------------------------

def _columns(probs) -> np.ndarray:
    """(N, C) float64 probabilities; a 1-D array is a binary task's positive-class probability."""
    p = np.asarray(probs, dtype=np.float64)
    return np.stack([1.0 - p, p], axis=1) if p.ndim == 1 else p


def _per_label(score, values, targets, binary_values) -> float:
    """Mean over labels of `score` on each label's two-column version."""
    values, targets = np.asarray(values, dtype=np.float64), np.asarray(targets)
    if values.shape != targets.shape:
        raise ValueError(f"multi-label scores {values.shape} and targets {targets.shape} must have the same shape")
    return float(np.mean([score(binary_values(values[:, j]), targets[:, j].astype(np.int64)) for j in range(values.shape[1])]))


def _binary_logits(z: np.ndarray) -> np.ndarray:
    return np.stack([np.zeros_like(z), z], axis=1)  # softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]


def probabilities_from_logits(logits, *, multilabel: bool = False) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-z)) if multilabel else softmax(z, axis=1)


def logits_from_probabilities(probs, *, multilabel: bool = False) -> np.ndarray:
    """Logits that give back `probs` (log p for softmax, up to a constant per row; log(p / (1 - p)) per label)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p) if multilabel else np.log(_columns(p))


# --- metrics ---------------------------------------------------------------------------------------------

def reliability_table(probs, targets, bins: int = 15) -> pd.DataFrame:
    """Per equal-mass bin (single-label, top-label; see the module docstring): its confidence range, mean
    confidence, accuracy and image count, lowest confidence first. A reliability diagram plots accuracy
    against confidence; ECE is the count-weighted mean gap."""
    p, y = _columns(probs), np.asarray(targets).astype(np.int64)
    if len(p) != len(y):
        raise ValueError(f"{len(p)} probability rows but {len(y)} targets")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    order = np.argsort(confidence, kind="stable")
    groups = [g for g in np.array_split(order, min(bins, len(order))) if len(g)]
    return pd.DataFrame({
        "bin": np.arange(len(groups)),
        "confidence_low": [confidence[g].min() for g in groups],
        "confidence_high": [confidence[g].max() for g in groups],
        "confidence": [confidence[g].mean() for g in groups],
        "accuracy": [correct[g].mean() for g in groups],
        "count": [len(g) for g in groups],
    })


def ece(probs, targets, bins: int = 15, *, multilabel: bool = False) -> float:
    """Top-label expected calibration error with equal-mass bins (see the module docstring)."""
    if multilabel:
        return _per_label(lambda p, y: ece(p, y, bins), probs, targets, lambda p: _columns(p))
    table = reliability_table(probs, targets, bins)
    if table.empty:
        return float("nan")
    weights = table["count"] / table["count"].sum()
    return float((weights * (table["accuracy"] - table["confidence"]).abs()).sum())


def brier(probs, targets, *, multilabel: bool = False) -> float:
    """Mean over images of the summed squared error of the class probabilities (see the module docstring)."""
    if multilabel:
        return _per_label(brier, probs, targets, lambda p: _columns(p))
    p, y = _columns(probs), np.asarray(targets).astype(np.int64)
    truth = np.eye(p.shape[1])[y]
    return float(((p - truth) ** 2).sum(axis=1).mean())


def nll(scores, targets, *, logits: bool = False, multilabel: bool = False) -> float:
    """Mean negative log-likelihood of the targets, from probabilities (scikit-learn's `log_loss`) or `logits=True`."""
    if multilabel:
        return _per_label(lambda s, y: nll(s, y, logits=logits), scores, targets,
                          _binary_logits if logits else (lambda p: _columns(p)))
    y = np.asarray(targets).astype(np.int64)
    if logits:
        log_p = log_softmax(np.asarray(scores, dtype=np.float64), axis=1)
    else:
        log_p = np.log(np.clip(_columns(scores), EPS, 1.0 - EPS))
    return float(-log_p[np.arange(len(y)), y].mean())


# --- temperature scaling -----------------------------------------------------------------------------------

def fit_temperature(val_logits, val_targets, *, multilabel: bool = False) -> float:
    """The T minimising validation NLL of logits / T (bounded, on log T); 1.0 unless it lowers that NLL."""
    z = np.asarray(val_logits, dtype=np.float64)
    if len(z) == 0:
        return 1.0

    def loss(log_t: float) -> float:
        return nll(z / np.exp(log_t), val_targets, logits=True, multilabel=multilabel)

    low, high = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    found = optimize.minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-5})
    temperature = float(np.exp(found.x))
    # Strictly lower or nothing: a flat NLL (all-equal logits) or a calibrated model keeps T = 1.
    return temperature if loss(found.x) < loss(0.0) else 1.0


def calibration_metrics(val_logits, val_targets, test_logits, test_targets, *, multilabel: bool = False,
                        bins: int = 15) -> dict[str, float]:
    """What a cell logs about calibration.

    test/ece, test/brier, test/nll            the test rows' probabilities as the model gives them
    test/ece_ts, test/brier_ts, test/nll_ts   after dividing the logits by the temperature fit on validation rows
    calibration/temperature                   that T (1.0: scaling did not lower validation NLL, or no validation rows)
    calibration/val_nll, calibration/val_nll_ts   validation NLL before and after (never higher after)
    """
    temperature = fit_temperature(val_logits, val_targets, multilabel=multilabel)
    out: dict[str, float] = {}
    for suffix, t in (("", 1.0), ("_ts", temperature)):
        z = np.asarray(test_logits, dtype=np.float64) / t
        p = probabilities_from_logits(z, multilabel=multilabel)
        out[f"test/ece{suffix}"] = ece(p, test_targets, bins, multilabel=multilabel)
        out[f"test/brier{suffix}"] = brier(p, test_targets, multilabel=multilabel)
        out[f"test/nll{suffix}"] = nll(z, test_targets, logits=True, multilabel=multilabel)
        if len(val_logits):
            out[f"calibration/val_nll{suffix}"] = nll(np.asarray(val_logits, dtype=np.float64) / t, val_targets,
                                                     logits=True, multilabel=multilabel)
    out["calibration/temperature"] = temperature
    return out


# --- logits of a fitted cell ----------------------------------------------------------------------------------

@torch.no_grad()
def predict_logits(module: torch.nn.Module, loader, *, transform=None) -> tuple[np.ndarray, np.ndarray]:
    """(logits, targets) of `module` (a ClassifierModule: forward gives logits) over `loader`, in eval mode.

    `transform`: the datamodule's `device_transform` (the device pipeline normalises batches on the
    device; the CPU pipeline's batches pass through). After `train_and_test` the module holds the
    selected epoch's weights, so the validation loader gives the logits temperature scaling is fit on."""
    was_training = module.training
    module.eval()
    parameter = next(module.parameters())
    logits, targets = [], []
    try:
        for batch in loader:
            batch = [batch[0].to(parameter.device), batch[1]]
            if transform is not None:
                batch = transform(batch, training=False)
            logits.append(module(batch[0].to(parameter.dtype)).float().cpu())
            targets.append(torch.as_tensor(batch[1]).cpu())
    finally:
        module.train(was_training)
    if not logits:
        return np.zeros((0, 0)), np.zeros((0,), dtype=np.int64)
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


def cell_calibration(result: Any, *, bins: int = 15) -> dict[str, float]:
    """`calibration_metrics` of a `TrainResult`: test predictions as tested, validation logits of the tested weights.

    Trained cells (ClassifierModule) run the validation loader through the module (`predict_logits`);
    frozen-feature cells (svm, vlad, knn, fewshot) kept their validation probabilities when scored
    (`validation_predictions()`), since their forward pass re-extracts features."""
    module, datamodule = result.module, result.datamodule
    multilabel = bool(module.multilabel)
    test_probs, test_targets = (t.numpy() for t in module.test_predictions())
    if hasattr(module, "validation_predictions"):
        val_probs, val_targets = module.validation_predictions()
        val_logits = logits_from_probabilities(val_probs, multilabel=multilabel)
    else:
        val_logits, val_targets = predict_logits(module, datamodule.val_dataloader(), transform=datamodule.device_transform)
    return calibration_metrics(val_logits, val_targets, logits_from_probabilities(test_probs, multilabel=multilabel),
                               test_targets, multilabel=multilabel, bins=bins)
