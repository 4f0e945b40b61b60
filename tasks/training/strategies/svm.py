"""Frozen features + linear SVM (Farhat & Sicre), and what both frozen-feature strategies share.

  svm   the backbone stays frozen; a named tap's output (VGG `block5_pool` by default, else the
        backbone's pooled output) at one or more input scales (`scales`; the paper: 224,544,864)
        is globally average-pooled and L2-normalised per scale; the scales are averaged
        (`scale_pool: mean`, then L2 again) or concatenated; scikit-learn's LinearSVC is fit on the
        training rows, its C picked from `svm_cs` by stratified `svm_cv`-fold cross-validation on
        the training rows only (scored by MCC; validation and test rows never enter), with
        class_weight="balanced" when `class_weighted`.

Neither strategy trains with Lightning: `train_and_test` calls `fit_frozen` instead (the Strategy's
`fit`), which returns a `FrozenFeatureClassifier` with the test interface of `ClassifierModule`
(test predictions, confusion matrix, the same torchmetrics collection), so a cell logs the same
metrics and artifacts. Features come from `tasks.training.features` (extracted once per content,
cached on disk, reused by every fold, seed and SVM setting).

Scales are averaged by default because Farhat & Sicre follow the multi-resolution aggregation of
R-MAC (Tolias, Sicre & Jegou 2016: per-scale vectors L2-normalised, summed, L2-normalised), which
keeps the dimension at C whatever the number of scales; `scale_pool: concat` keeps each scale's
vector apart (dimension scales x C). Multi-label tasks get one-vs-rest SVMs (one per label,
scikit-learn's OneVsRestClassifier; C scored by sample-averaged F1 on plain k-fold).

Probabilities in predictions tables are softmax (single-label) or sigmoid (multi-label) of the SVM
margins, not calibrated probabilities: their argmax, or the 0.5 threshold, is the SVM's decision,
and AUC ranks by the margins.

Throughput (`test/fps`): `FrozenFeatureClassifier.forward` is what an image costs: resize to
each scale, backbone up to the tap, pooling/encoding, SVM decision. `test/fps_pipeline` counts the
test rows' extraction as the extraction measured it (decode + resize + forward, seconds per image,
stored with the cache entry, summed over scales) plus the encoding and SVM prediction of this cell.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC
from torch import nn
from torch.nn import functional as F

from backbones import Backbone
from backbones.registry import input_config
from tasks.data.index import Task, TaskMeta
from tasks.training.features import FINAL, Features, content_digests, forward_tap, meta_backbone, pool_output, spatial_taps, tap_features, tap_shapes
from tasks.training.hparams import HParam
from tasks.training.metrics import DEFAULT_THRESHOLD, choose_threshold, classification_metrics, confusion_matrix_metric
from tasks.training.strategies import StrategyNotApplicable, list_strategies, FeatureStrategy, add_strategy

IMAGE_SIZE = "image_size"  # `scales` value meaning the cell's own image size
VGG_TAP = "block5_pool"  # Farhat & Sicre's tap; the default wherever a backbone has it

TAP = HParam("auto", str, "feature tap: a name from the backbone's feature_taps(), 'final' (its pooled output), or "
             "'auto' (block5_pool where the backbone has it; else 'final' for svm, the deepest spatial tap for vlad)")
SCALES = HParam(IMAGE_SIZE, str, "input sides in px, comma-separated (Farhat & Sicre: 224,544,864); "
                "'image_size': the cell's image size")
SVM_CS = HParam("0.001,0.01,0.1,1,10,100", str, "candidate C values of the linear SVM, comma-separated; "
                "cross-validation on the training rows picks one")
SVM_CV = HParam(3, int, "folds of the cross-validation that picks C (training rows only)", low=2)
SHARED_READ = ("class_weighted",)  # no epochs, lr or batch size: nothing is trained by gradient descent


# --- hyperparameter parsing and the applicability check ----------------------------------------------

def parse_scales(text: str, image_size: int) -> list[int]:
    """`scales` as a list of pixel sides; `image_size` stands for the cell's own."""
    try:
        scales = [image_size if s.strip() == IMAGE_SIZE else int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        scales = []
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"hyperparameter 'scales' must be comma-separated pixel sides such as '224' or "
                         f"'224,544,864' (or '{IMAGE_SIZE}'), got {text!r}")
    return scales


def parse_cs(text: str) -> list[float]:
    try:
        cs = [float(c) for c in str(text).split(",") if c.strip()]
    except ValueError:
        cs = []
    if not cs or any(c <= 0 for c in cs):
        raise ValueError(f"hyperparameter 'svm_cs' must be comma-separated positive numbers such as '0.1,1,10', got {text!r}")
    return cs


def resolve_tap(strategy: str, backbone: str, requested: str, shapes: dict[str, tuple], *, spatial: bool) -> str:
    """The tap a cell reads, or StrategyNotApplicable naming the valid taps and alternatives."""
    described = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in shapes.items())
    others = ", ".join(s for s in list_strategies() if s != strategy)
    if requested == "auto":
        if VGG_TAP in shapes:
            return VGG_TAP
        if not spatial:
            return FINAL
        found = spatial_taps(shapes)
        if not found:
            raise StrategyNotApplicable(
                f"Strategy {strategy!r} needs a spatial feature map (C x H x W: each position a local descriptor), but "
                f"backbone {backbone!r} has none (its taps: {described}). Valid alternatives: another strategy "
                f"({others}), or a backbone with a spatial tap (e.g. vgg19 block5_pool, resnet18 layer4, smallcnn block4).")
        return found[-1]
    if requested not in shapes:
        raise StrategyNotApplicable(f"Strategy {strategy!r}: backbone {backbone!r} has no tap {requested!r} (hyperparameter "
                                    f"'tap'). Valid taps: auto, {', '.join(shapes)}.")
    if spatial and len(shapes[requested]) != 3:
        valid = ", ".join(["auto", *spatial_taps(shapes)]) if spatial_taps(shapes) else f"none (use {others})"
        raise StrategyNotApplicable(f"Strategy {strategy!r} needs a spatial tap; {backbone}'s {requested!r} is "
                                    f"{'x'.join(map(str, shapes[requested]))}. Valid taps: {valid}.")
    return requested


def applicability(strategy: str, *, spatial: bool) -> Callable[..., None]:
    """The Strategy's `applies` hook: valid scales and a valid (spatial, for VLAD) tap on this backbone."""

    def applies(backbone, hparams: Mapping[str, Any], *, image_size: int, kind: str | None = None) -> None:
        name = backbone if isinstance(backbone, str) else backbone.name
        minimum = input_config(name).min_size
        scales = parse_scales(hparams["scales"], image_size)
        small = [s for s in scales if s < minimum]
        if small:
            raise StrategyNotApplicable(f"Strategy {strategy!r}: scales {small} are below what backbone {name!r} accepts "
                                        f"({minimum} px); use scales >= {minimum}.")
        parse_cs(hparams.get("svm_cs", "1"))
        resolve_tap(strategy, name, str(hparams["tap"]), tap_shapes(meta_backbone(name), min(scales)), spatial=spatial)
        # Every task kind applies: multi-class and binary directly, multi-label one-vs-rest.

    return applies


# --- encoders and the SVM ----------------------------------------------------------------------------

def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class PooledEncoder:
    """Farhat & Sicre's global descriptor: per scale, GAP (done at extraction) then L2; scales averaged or concatenated."""

    pool = "gap"  # what the cache holds for this encoder

    def __init__(self, scale_pool: str = "mean") -> None:
        self.scale_pool = scale_pool

    def fit(self, per_scale: list[np.ndarray], seed: int) -> "PooledEncoder":
        return self  # nothing to learn

    def transform(self, per_scale: list[np.ndarray]) -> np.ndarray:
        vectors = [l2_normalise(f) for f in per_scale]
        joined = np.mean(vectors, axis=0) if self.scale_pool == "mean" else np.concatenate(vectors, axis=1)
        return l2_normalise(joined)


def fit_linear_svm(x: np.ndarray, y: np.ndarray, *, multilabel: bool, cs: list[float], folds: int, class_weighted: bool,
                   seed: int) -> tuple[Any, float]:
    """LinearSVC (one-vs-rest per label for multi-label) with C picked by k-fold CV on (x, y); (fitted, C)."""
    # Primal (dual=False): liblinear's dual solver stalls at large C on L2-normalised features (on dtd10's
    # ResNet-18 features, C=100: 7,400 iterations and 69 s, against 19 iterations and 0.9 s in the primal),
    # and dual="auto" picks the dual whenever a CV split has fewer rows than features.
    svc = LinearSVC(class_weight="balanced" if class_weighted else None, dual=False, random_state=seed)
    if multilabel:
        estimator, grid, scoring = OneVsRestClassifier(svc), {"estimator__C": cs}, "f1_samples"
        splitter = KFold(min(folds, len(y)), shuffle=True, random_state=seed)
    else:
        # Not more folds than the rarest training class has rows (else a fold would lack it entirely).
        smallest = int(np.bincount(y)[np.bincount(y) > 0].min())
        estimator, grid, scoring = svc, {"C": cs}, "matthews_corrcoef"
        splitter = StratifiedKFold(max(2, min(folds, smallest)), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Scratch features of a tiny set can stop LinearSVC at max_iter; one warning per (C, fold) is noise.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(cs) == 1:
            estimator.set_params(**{next(iter(grid)): cs[0]})
            return estimator.fit(x, y), cs[0]
        search = GridSearchCV(estimator, grid, scoring=scoring, cv=splitter, refit=True, n_jobs=1, error_score="raise")
        search.fit(x, y)
    return search.best_estimator_, float(next(iter(search.best_params_.values())))


def svm_probabilities(estimator, x: np.ndarray, meta: TaskMeta, train_targets: np.ndarray) -> np.ndarray:
    """(N, C) scores whose argmax (single-label) or >= 0.5 (multi-label) is the SVM's decision; see the docstring."""
    margins = np.asarray(estimator.decision_function(x), dtype=np.float64)
    if meta.kind == "multilabel":
        # A label constant in training gets scikit-learn's constant predictor (margin 0 or 1): pin it to its constant.
        positives = train_targets.sum(axis=0)
        margins[:, positives == 0] = -np.inf
        margins[:, positives == len(train_targets)] = np.inf
        return 1.0 / (1.0 + np.exp(-margins))
    logits = np.full((len(x), meta.num_classes), -np.inf)
    classes = estimator.classes_
    if margins.ndim == 1:  # two classes: one margin, positive for classes_[1]
        logits[:, classes[0]], logits[:, classes[1]] = 0.0, margins
    else:
        logits[:, classes] = margins
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


# --- the fitted model: what a cell tests, logs and times -------------------------------------------

class FrozenFeatureClassifier(nn.Module):
    """Frozen backbone -> tap at each scale -> encoder -> fitted SVM, with `ClassifierModule`'s test interface."""

    def __init__(self, backbone: Backbone, meta: TaskMeta, *, tap: str, scales: list[int], encoder, svm,
                 train_targets: np.ndarray) -> None:
        super().__init__()
        self.backbone = backbone
        self.meta = meta
        self.tap, self.scales, self.encoder, self.svm = tap, list(scales), encoder, svm
        self.train_targets = train_targets
        self.multilabel = meta.kind == "multilabel"
        self.test_metrics = classification_metrics(meta).clone(prefix="test/")
        self.test_confmat = confusion_matrix_metric(meta)
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.threshold = DEFAULT_THRESHOLD  # multi-label decision threshold (chosen on validation rows)
        self.val_outputs: tuple[np.ndarray, np.ndarray] | None = None  # set by score_frozen (calibration reads them)

    def validation_predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, targets) of the validation rows as scored; empty where the fold has none."""
        if self.val_outputs is None:
            return np.zeros((0, self.meta.num_classes)), np.zeros((0, self.meta.num_classes) if self.multilabel else 0)
        return self.val_outputs

    def set_threshold(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self.test_metrics = classification_metrics(self.meta, self.threshold).clone(prefix="test/")

    def probabilities_of(self, per_scale: list[np.ndarray]) -> np.ndarray:
        return self.head_probabilities(self.encoder.transform(per_scale))

    def head_probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, C) scores of encoded features `x`; probes (`ProbeClassifier`) replace the SVM here."""
        return svm_probabilities(self.svm, x, self.meta, self.train_targets)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W), normalised -> class scores; each scale is a resize of `x`."""
        per_scale = []
        for scale in self.scales:
            resized = x if x.shape[-1] == scale else F.interpolate(x, size=(scale, scale), mode="bilinear", antialias=True)
            per_scale.append(pool_output(forward_tap(self.backbone, resized, self.tap), self.encoder.pool).float().cpu().numpy())
        return torch.from_numpy(self.probabilities_of(per_scale)).float()

    def record_test(self, probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Score test predictions with the torchmetrics collection `ClassifierModule` uses; keep them for the tables."""
        p = torch.from_numpy(np.asarray(probs, dtype=np.float32))
        y = torch.from_numpy(targets)
        self.test_outputs = [(p, y)]
        self.test_metrics.reset()
        self.test_metrics.update(p, y.int() if self.multilabel else y)
        if self.test_confmat is not None:
            self.test_confmat.reset()
            self.test_confmat.update(p.argmax(dim=1), y)
        return {k: float(v) for k, v in self.test_metrics.compute().items()}

    def test_predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        probs, targets = zip(*self.test_outputs)
        return torch.cat(probs), torch.cat(targets)


@dataclass
class FrozenFit:
    """What a frozen-feature strategy hands back to `train_and_test` (which wraps it in a TrainResult)."""

    model: FrozenFeatureClassifier  # tested, timed for throughput
    metrics: dict[str, float]  # test/* (and val/* where the fold has validation rows)
    fit_seconds: float  # features (extraction or cache) + encoder + C search + final fit
    test_seconds: float  # extraction cost of the test rows (as measured) + encoding + SVM prediction
    extra: dict = field(default_factory=dict)  # non-test numbers a cell logs: chosen C, feature dimension, cache hits


def targets_of(task: Task, rows: np.ndarray) -> np.ndarray:
    """Class ids (single-label) or a multi-hot float matrix (multi-label) for `rows`."""
    if task.meta.kind != "multilabel":
        return task.labels[rows]
    hot = np.zeros((len(rows), task.meta.num_classes), dtype=np.float32)
    for i, labels in enumerate(task.index["labels"].to_numpy()[rows]):
        hot[i, list(labels)] = 1.0
    return hot


@dataclass
class CellFeatures:
    """A cell's frozen features: every row of the task at each scale, and the encoder that combines them."""

    tap: str  # the resolved tap (never 'auto')
    scales: list[int]  # input sides in px, in `scales` order
    encoder: Any  # PooledEncoder or VladEncoder; fit it on training rows before `encode`
    features: list[Features]  # one cache entry per scale, rows in task index order

    def encode(self, rows: np.ndarray) -> np.ndarray:
        return self.encoder.transform([f.array[rows] for f in self.features])

    def extra(self, dim: int) -> dict[str, float]:
        """The feature numbers a cell logs beside its metrics."""
        return {"features/dim": float(dim), "features/scales": float(len(self.scales)),
                "features/cache_hits": float(sum(f.cached for f in self.features)),
                "features/extract_seconds_per_image": float(sum(f.seconds_per_image for f in self.features))}


def cell_features(task: Task, backbone: Backbone, hp: Mapping[str, Any], *, strategy: str, spatial: bool,
                  make_encoder: Callable[[Mapping[str, Any]], Any], size: int, accelerator: str = "cpu",
                  num_workers: int = 0, cache_dir: Path | None = None) -> CellFeatures:
    """The tap and scales of `hp` resolved on `backbone`, and every row's features from the cache (extracted on a miss)."""
    scales = parse_scales(hp["scales"], size)
    tap = resolve_tap(strategy, backbone.name, str(hp["tap"]), tap_shapes(backbone, min(scales)), spatial=spatial)
    encoder = make_encoder(hp)
    digests = content_digests(task, backbone)
    features = [tap_features(task, backbone, tap=tap, scale=s, pool=encoder.pool, cache_dir=cache_dir,
                             accelerator=accelerator, num_workers=num_workers, digests=digests) for s in scales]
    return CellFeatures(tap, scales, encoder, features)


def score_frozen(model: FrozenFeatureClassifier, task: Task, fold, cell: CellFeatures, *, fit_seconds: float,
                 extra: dict[str, float]) -> FrozenFit:
    """Test `model` on the fold's test rows (and report its validation rows) as a trained cell would be."""
    multilabel = task.meta.kind == "multilabel"
    val = np.asarray(fold.val)
    val_probs = model.head_probabilities(cell.encode(val)) if len(val) else None
    model.val_outputs = None if val_probs is None else (val_probs, targets_of(task, val))
    if multilabel and val_probs is not None:  # the decision threshold: chosen on validation rows, as trained cells do
        model.set_threshold(choose_threshold(val_probs, targets_of(task, val)))
    start = time.perf_counter()
    test = np.asarray(fold.test)
    metrics = model.record_test(model.head_probabilities(cell.encode(test)), targets_of(task, test))
    test_seconds = time.perf_counter() - start + len(test) * sum(f.seconds_per_image for f in cell.features)
    if val_probs is not None:  # reported like a trained cell's validation metrics (only the threshold is chosen)
        scorer = classification_metrics(task.meta, model.threshold).clone(prefix="val/")
        probs = torch.from_numpy(np.asarray(val_probs, dtype=np.float32))
        y_val = torch.from_numpy(targets_of(task, val))
        scorer.update(probs, y_val.int() if multilabel else y_val)
        metrics.update({k: float(v) for k, v in scorer.compute().items()})
    return FrozenFit(model, metrics, fit_seconds, test_seconds, extra)


def fit_frozen(task: Task, backbone: Backbone, fold, hp: Mapping[str, Any], *, strategy: str, spatial: bool,
               make_encoder: Callable[[Mapping[str, Any]], Any], size: int, seed: int, accelerator: str = "cpu",
               num_workers: int = 0, cache_dir: Path | None = None) -> FrozenFit:
    """Features (cached) -> encoder fit on training rows -> SVM with C by CV on training rows -> test."""
    start = time.perf_counter()
    cell = cell_features(task, backbone, hp, strategy=strategy, spatial=spatial, make_encoder=make_encoder, size=size,
                         accelerator=accelerator, num_workers=num_workers, cache_dir=cache_dir)
    multilabel = task.meta.kind == "multilabel"
    train = np.asarray(fold.train)
    y_train = targets_of(task, train)
    cell.encoder.fit([f.array[train] for f in cell.features], seed)  # k-means / PCA (VLAD) see training rows only
    x_train = cell.encode(train)
    svm, c = fit_linear_svm(x_train, y_train if multilabel else y_train.astype(np.int64), multilabel=multilabel,
                            cs=parse_cs(hp["svm_cs"]), folds=int(hp["svm_cv"]), class_weighted=bool(hp["class_weighted"]),
                            seed=seed)
    fit_seconds = time.perf_counter() - start
    model = FrozenFeatureClassifier(backbone, task.meta, tap=cell.tap, scales=cell.scales, encoder=cell.encoder, svm=svm,
                                    train_targets=y_train)
    return score_frozen(model, task, fold, cell, fit_seconds=fit_seconds, extra={"svm/C": c, **cell.extra(x_train.shape[1])})


def frozen_fit(strategy: str, *, spatial: bool, make_encoder: Callable[[Mapping[str, Any]], Any]) -> Callable[..., FrozenFit]:
    """The Strategy's `fit`: `train_and_test` calls it with the task, backbone, fold and resolved hyperparameters."""

    def fit(task: Task, backbone: Backbone, fold, hp: Mapping[str, Any], **options) -> FrozenFit:
        return fit_frozen(task, backbone, fold, hp, strategy=strategy, spatial=spatial, make_encoder=make_encoder, **options)

    return fit


SVM_PARAMS = {
    "tap": TAP,
    "scales": SCALES,
    "scale_pool": HParam("mean", str, "how per-scale vectors combine: mean (R-MAC's multi-resolution sum, dimension C) "
                         "or concat (dimension scales x C)", choices=("mean", "concat")),
    "svm_cs": SVM_CS,
    "svm_cv": SVM_CV,
}


add_strategy(FeatureStrategy(
    name="svm",
    summary="frozen features + linear SVM (Farhat & Sicre): tap GAP at each scale, L2, LinearSVC with C by CV on training rows",
    params=SVM_PARAMS,
    shared=SHARED_READ,
    fit=frozen_fit("svm", spatial=False, make_encoder=lambda hp: PooledEncoder(str(hp["scale_pool"]))),
    applies=applicability("svm", spatial=False),
))
