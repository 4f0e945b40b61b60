"""Few-shot episodes on frozen features (the MedFMC protocol: n images per class, repeated draws).

  fewshot  svm's features (the same tap, scales and cache entries), L2-normalised. An episode
           draws `shots` images of every class, without replacement, from the fold's TRAINING
           rows only (validation and test rows are never drawn), seeded by (cell seed, episode);
           a class's prototype is the mean of its support features, L2-normalised; an image goes
           to the most cosine-similar prototype. `episodes` draws, each tested on all of the
           fold's test rows.

The head is the nearest class centroid in cosine space (prototypes, Snell et al. 2017; on
L2-normalised features, SimpleShot, Wang et al. 2019) rather than a logistic regression: it has
no hyperparameter (a regulariser C cannot be cross-validated on 1 image per class), is closed
form and deterministic given the draw (microseconds per episode), and with 1 shot it is what
any linear head on one image per class reduces to. Probabilities are softmax(cosine / 0.1) over
the prototypes (`PROTOTYPE_TEMPERATURE`; the decision does not depend on it, AUC and calibration
do); a class with no training row gets no prototype and probability 0.

Results: test/* (and val/*) are the means over episodes of the metrics svm logs; each test
metric also gets `<name>_episode_std` (sample standard deviation over episodes) and
`<name>_episode_ci_low` / `_ci_high` (95% Student-t interval of the mean over episodes; NaN with
one episode). The model a cell keeps (its confusion matrix, predictions table, throughput) is
the representative episode's: the one with the median test MCC (the lower median for an even
count; `fewshot/episode` names it). A class with fewer training rows than `shots` contributes
all it has, with a warning, and is counted in `fewshot/short_classes`. Multi-label tasks are
refused (n images per class is not defined when an image holds several labels).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from backbones import Backbone
from tasks.data.index import Task, TaskMeta
from tasks.training.hparams import HParam
from tasks.training.metrics import classification_metrics
from tasks.training.strategies import FeatureStrategy, add_strategy
from tasks.training.strategies.probes import PROBE_PARAMS, PROBE_SHARED, ProbeClassifier, probe_applicability, probe_encoder
from tasks.training.strategies.svm import FrozenFit, cell_features, l2_normalise, score_frozen

PROTOTYPE_TEMPERATURE = 0.1  # a cosine gap of 0.1 between two prototypes is odds of e : 1
CONFIDENCE = 0.95  # of the interval over episodes


def support_sets(labels: np.ndarray, train_rows: np.ndarray, num_classes: int, *, shots: int, episodes: int,
                 seed: int) -> list[np.ndarray]:
    """Row indices (into the task) of each episode's support set: `shots` per class from `train_rows` only.

    Episode e draws with `np.random.default_rng((seed, e))`, so an episode's draw does not depend on
    how many episodes a cell asks for. A class with fewer rows gives all of them (see the docstring)."""
    train_rows = np.sort(np.asarray(train_rows))
    pools = [train_rows[labels[train_rows] == c] for c in range(num_classes)]
    draws = []
    for episode in range(episodes):
        rng = np.random.default_rng((int(seed), episode))
        draws.append(np.concatenate([rng.choice(pool, min(shots, len(pool)), replace=False) for pool in pools]))
    return draws


class Prototypes:
    """The nearest-class-centroid head of one episode (cosine)."""

    def __init__(self, support: np.ndarray, labels: np.ndarray, num_classes: int,
                 temperature: float = PROTOTYPE_TEMPERATURE) -> None:
        unit = l2_normalise(support)
        self.present = np.array([(labels == c).any() for c in range(num_classes)])
        centroids = np.zeros((num_classes, unit.shape[1]), np.float32)
        for c in np.flatnonzero(self.present):
            centroids[c] = unit[labels == c].mean(axis=0)
        self.centroids = l2_normalise(centroids)
        self.temperature = temperature

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        logits = (l2_normalise(x) @ self.centroids.T).astype(np.float64) / self.temperature
        logits[:, ~self.present] = -np.inf
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def episode_metrics(meta: TaskMeta, probs: np.ndarray, targets: np.ndarray, prefix: str) -> dict[str, float]:
    """The metrics every cell logs (`tasks.training.metrics`), of one episode's predictions."""
    scorer = classification_metrics(meta).clone(prefix=prefix)
    scorer.update(torch.from_numpy(np.asarray(probs, dtype=np.float32)), torch.from_numpy(np.asarray(targets)))
    return {k: float(v) for k, v in scorer.compute().items()}


def episode_summary(per_episode: list[dict[str, float]]) -> dict[str, float]:
    """Means over episodes; for test metrics also the spread (sample std, 95% t-interval of the mean)."""
    out: dict[str, float] = {}
    for key in per_episode[0]:
        values = np.array([m[key] for m in per_episode])
        mean = float(values.mean())
        out[key] = mean
        if not key.startswith("test/"):
            continue
        n = len(values)
        std = float(values.std(ddof=1)) if n > 1 else float("nan")
        if n == 1:
            low = high = float("nan")
        elif std == 0:
            low = high = mean
        else:
            low, high = (float(v) for v in stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=std / np.sqrt(n)))
        out.update({f"{key}_episode_std": std, f"{key}_episode_ci_low": low, f"{key}_episode_ci_high": high})
    return out


def fit_fewshot(task: Task, backbone: Backbone, fold, hp: Mapping[str, Any], *, size: int, seed: int,
                accelerator: str = "cpu", num_workers: int = 0, cache_dir: Path | None = None) -> FrozenFit:
    """The Strategy's `fit`: features (cached) -> `episodes` support draws from training rows -> prototypes -> test."""
    start = time.perf_counter()
    meta, labels, shots = task.meta, task.labels, int(hp["shots"])
    train, val, test = (np.asarray(rows) for rows in (fold.train, fold.val, fold.test))
    available = np.bincount(labels[train], minlength=meta.num_classes)
    short = [f"{meta.class_names[c]} ({n})" for c, n in enumerate(available) if n < shots]
    if short:
        warnings.warn(f"{meta.name}: fewer than shots={shots} training rows in class(es) {', '.join(short)}; each "
                      "episode's support takes all of them (lower 'shots' for equal classes).", stacklevel=2)
    supports = support_sets(labels, train, meta.num_classes, shots=shots, episodes=int(hp["episodes"]), seed=seed)
    cell = cell_features(task, backbone, hp, strategy="fewshot", spatial=False, make_encoder=probe_encoder, size=size,
                         accelerator=accelerator, num_workers=num_workers, cache_dir=cache_dir)
    x_test, x_val = cell.encode(test), cell.encode(val)
    heads, per_episode = [], []
    for support in supports:
        head = Prototypes(cell.encode(support), labels[support], meta.num_classes)
        scores = episode_metrics(meta, head.probabilities(x_test), labels[test], "test/")
        if len(val):
            scores.update(episode_metrics(meta, head.probabilities(x_val), labels[val], "val/"))
        heads.append(head)
        per_episode.append(scores)
    mccs = np.array([m["test/mcc"] for m in per_episode])
    chosen = int(np.argsort(mccs, kind="stable")[(len(mccs) - 1) // 2])
    model = ProbeClassifier(backbone, meta, tap=cell.tap, scales=cell.scales, encoder=cell.encoder, head=heads[chosen],
                            train_targets=labels[supports[chosen]])
    fitted = score_frozen(model, task, fold, cell, fit_seconds=time.perf_counter() - start,
                          extra={"fewshot/episode": float(chosen), "fewshot/short_classes": float(len(short)),
                                 **cell.extra(x_test.shape[1])})
    fitted.metrics.update(episode_summary(per_episode))
    return fitted


FEWSHOT_PARAMS = {
    **PROBE_PARAMS,
    "shots": HParam(5, int, "support images per class in an episode (MedFMC: 1, 5 or 10), drawn from training rows",
                    low=1),
    "episodes": HParam(10, int, "support draws per cell; test metrics are their mean, with std and 95% CI", low=1),
}


add_strategy(FeatureStrategy(
    name="fewshot",
    summary="few-shot episodes on frozen features (MedFMC): n per class from training rows, cosine prototypes, mean of draws",
    params=FEWSHOT_PARAMS,
    shared=PROBE_SHARED,
    fit=fit_fewshot,
    applies=probe_applicability("fewshot", multilabel=False),
))
