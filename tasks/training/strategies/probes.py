"""What the probe strategies (`knn.py`, `fewshot.py`) share: svm's features, a head that gives probabilities.

A probe reads exactly the features the `svm` strategy reads (the same tap, scales and cache
entries: `svm.cell_features`), L2-normalised per scale and averaged over scales (svm's default
`scale_pool: mean`), and puts a non-linear, training-free head on them instead of the SVM. The
fitted model is a `FrozenFeatureClassifier` (svm's test interface: predictions, confusion matrix,
throughput), so `train_and_test` and the cell route handle a probe cell like an svm cell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from backbones import Backbone
from tasks.data.index import TaskMeta
from tasks.training.strategies import StrategyNotApplicable, list_strategies
from tasks.training.strategies.svm import SCALES, TAP, FrozenFeatureClassifier, PooledEncoder, applicability

PROBE_PARAMS = {"tap": TAP, "scales": SCALES}  # the features: the same entries as svm's, so the cache is shared
PROBE_SHARED: tuple[str, ...] = ()  # no shared entry applies: nothing is trained, no class weights are used


class ProbeHead(Protocol):
    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, C) probabilities (single-label: rows sum to 1; multi-label: per label) of encoded features `x`."""


class ProbeClassifier(FrozenFeatureClassifier):
    """svm's frozen model with a probe head in place of the SVM: `head.probabilities` gives the scores."""

    def __init__(self, backbone: Backbone, meta: TaskMeta, *, tap: str, scales: list[int], encoder, head: ProbeHead,
                 train_targets: np.ndarray) -> None:
        super().__init__(backbone, meta, tap=tap, scales=scales, encoder=encoder, svm=None, train_targets=train_targets)
        self.head = head

    def head_probabilities(self, x: np.ndarray) -> np.ndarray:
        return self.head.probabilities(x)


def probe_encoder(hp: Mapping[str, Any]) -> PooledEncoder:
    return PooledEncoder("mean")


def probe_applicability(strategy: str, *, multilabel: bool) -> Callable[..., None]:
    """svm's check (scales the backbone accepts, a valid tap), and a refusal of multi-label tasks unless `multilabel`."""
    base = applicability(strategy, spatial=False)

    def applies(backbone, hparams: Mapping[str, Any], *, image_size: int, kind: str | None = None) -> None:
        if kind == "multilabel" and not multilabel:
            others = ", ".join(s for s in list_strategies() if s != strategy)
            raise StrategyNotApplicable(
                f"Strategy {strategy!r} draws n images per class, which a multi-label task does not define (an image "
                f"holds several labels). Valid alternatives for a multi-label task: {others}.")
        base(backbone, hparams, image_size=image_size, kind=kind)

    return applies

