"""k-nearest-neighbour probe on frozen features (the k-NN evaluation of DINO and MedMNIST+).

  knn   svm's features (the same tap, scales and cache entries), L2-normalised; each evaluated
        image's `knn_k` most cosine-similar training rows vote for their class, each vote weighted
        exp(similarity / knn_temperature) (`knn_weighting: exp`, DINO's weighted k-NN, Caron et al.
        2021) or 1 (`knn_weighting: uniform`, scikit-learn's KNeighborsClassifier(metric="cosine")).

Probabilities are the vote shares (the weights of a class's votes over the weights of all k
votes): their argmax is the k-NN decision (ties to the lower class id, as scikit-learn breaks
them) and AUC ranks by the share. Multi-label tasks: per label, the weighted share of neighbours
that carry it, decided at the threshold chosen on validation rows as svm's are.

Defaults are DINO's: k = 20, T = 0.07. With T = 0.07 a neighbour 0.07 less similar than the
nearest counts 1/e as much, so the nearest few dominate; a large T tends to uniform voting.
`knn_k` above the number of training rows is capped at it (every row votes; `knn/k` logs the k
used). Only training rows are neighbours; validation rows are reported (val/*) and never vote.
Nothing is trained or drawn at random, so the seed does not enter; the cost is one similarity
matrix (test x training rows) computed in chunks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backbones import Backbone
from tasks.data.index import Task
from tasks.training.hparams import HParam
from tasks.training.strategies import FeatureStrategy, add_strategy
from tasks.training.strategies.probes import PROBE_PARAMS, PROBE_SHARED, ProbeClassifier, probe_applicability, probe_encoder
from tasks.training.strategies.svm import FrozenFit, cell_features, l2_normalise, score_frozen, targets_of

WEIGHTINGS = ("exp", "uniform")
SIMILARITIES_PER_CHUNK = 1 << 24  # bounds memory: (query rows x training rows) float32 similarities at a time


class KnnVote:
    """The k-NN head: a bank of L2-normalised training features and their (one- or multi-hot) labels."""

    def __init__(self, bank: np.ndarray, targets: np.ndarray, num_classes: int, *, k: int, weighting: str = "exp",
                 temperature: float = 0.07) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"Unknown k-NN weighting {weighting!r}. Valid weightings: {', '.join(WEIGHTINGS)}.")
        if len(bank) == 0:
            raise ValueError("k-NN needs at least one training row to vote; the fold has none.")
        self.bank = torch.from_numpy(l2_normalise(bank))
        targets = np.asarray(targets)
        # Votes per training row: one-hot of its class, or its multi-hot label vector.
        hot = np.eye(num_classes, dtype=np.float64)[targets.astype(np.int64)] if targets.ndim == 1 else targets
        self.votes = torch.from_numpy(np.asarray(hot, dtype=np.float64))
        self.k = min(int(k), len(bank))
        self.weighting, self.temperature = weighting, float(temperature)

    def neighbours(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(cosine similarities, training-row positions) of each row's k nearest, most similar first."""
        query = torch.from_numpy(l2_normalise(x))
        step = max(1, SIMILARITIES_PER_CHUNK // len(self.bank))
        parts = [torch.topk(query[lo:lo + step] @ self.bank.T, self.k, dim=1) for lo in range(0, len(query), step)]
        if not parts:
            return torch.empty(0, self.k), torch.empty(0, self.k, dtype=torch.long)
        return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])

    def weights(self, similarities: torch.Tensor) -> torch.Tensor:
        sims = similarities.double()
        if self.weighting == "uniform":
            return torch.ones_like(sims)
        # Shifted by the nearest similarity: the same shares, without overflow at small T.
        return torch.exp((sims - sims[:, :1]) / self.temperature)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, C) vote shares of `x`'s k nearest training rows (see the module docstring)."""
        similarities, index = self.neighbours(x)
        w = self.weights(similarities)
        shares = (w.unsqueeze(-1) * self.votes[index]).sum(dim=1) / w.sum(dim=1, keepdim=True)
        return shares.numpy()


def fit_knn(task: Task, backbone: Backbone, fold, hp: Mapping[str, Any], *, size: int, seed: int, accelerator: str = "cpu",
            num_workers: int = 0, cache_dir: Path | None = None) -> FrozenFit:
    """The Strategy's `fit`: features (cached) -> a bank of the training rows -> vote on test (and validation) rows."""
    start = time.perf_counter()
    cell = cell_features(task, backbone, hp, strategy="knn", spatial=False, make_encoder=probe_encoder, size=size,
                         accelerator=accelerator, num_workers=num_workers, cache_dir=cache_dir)
    train = np.asarray(fold.train)
    y_train = targets_of(task, train)
    x_train = cell.encode(train)
    head = KnnVote(x_train, y_train, task.meta.num_classes, k=int(hp["knn_k"]), weighting=str(hp["knn_weighting"]),
                   temperature=float(hp["knn_temperature"]))
    model = ProbeClassifier(backbone, task.meta, tap=cell.tap, scales=cell.scales, encoder=cell.encoder, head=head,
                            train_targets=y_train)
    return score_frozen(model, task, fold, cell, fit_seconds=time.perf_counter() - start,
                        extra={"knn/k": float(head.k), **cell.extra(x_train.shape[1])})


KNN_PARAMS = {
    **PROBE_PARAMS,
    "knn_k": HParam(20, int, "neighbours that vote (DINO: 20); capped at the number of training rows", low=1,
                    space=lambda trial, name: trial.suggest_categorical(name, [5, 10, 20, 50, 100])),
    "knn_weighting": HParam("exp", str, "vote weight: exp (exp(cosine / knn_temperature), DINO's weighted k-NN) or "
                            "uniform (one vote each, scikit-learn's KNeighborsClassifier)", choices=WEIGHTINGS,
                            space=lambda trial, name: trial.suggest_categorical(name, list(WEIGHTINGS))),
    "knn_temperature": HParam(0.07, float, "temperature T of the exp weighting (DINO: 0.07); unused when uniform",
                              low=1e-4, space=lambda trial, name: trial.suggest_float(name, 0.01, 1.0, log=True)),
}


add_strategy(FeatureStrategy(
    name="knn",
    summary="k-NN probe on frozen features (DINO, MedMNIST+): cosine, k nearest training rows vote, weight exp(sim/T)",
    params=KNN_PARAMS,
    shared=PROBE_SHARED,
    fit=fit_knn,
    applies=probe_applicability("knn", multilabel=True),
))
