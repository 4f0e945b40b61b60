"""Ensemble cells: expanded after their members, scored from the members' logged test predictions.

    strategies: [full, ensemble-seeds]      # in a suite: Hicks et al.'s 3-averaged models
    medtl benchmark SUITE                   # the runner scores each ensemble after its members

An ensemble cell is a RunSpec whose `members` are the hashes of the cells it averages (identity:
change a member and the ensemble is a new cell). Scoring reads each member's
`test/predictions.csv` from MLflow, checks that they predict the same test rows in the same
order with the same targets, averages the class probabilities, and scores them with the metrics
every trained cell uses. Cost: inference time per image is the sum of the members' (FPS combine
as 1 / sum(1 / fps)), training time the sum of their fit times.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmark.spec import RunSpec
from tasks.training import get_strategy
from tasks.training.evaluation import per_class_report, per_label_confusion, predictions_table
from tasks.training.metrics import DEFAULT_THRESHOLD, score

PREDICTIONS = "test/predictions.csv"
# axis -> the spec fields that identify one ensemble (everything but the axis it averages over)
GROUP_BY = {
    "seeds": ("source", "backbone", "strategy", "fold", "fraction"),
    "sources": ("backbone", "strategy", "fold", "seed", "fraction"),
    "backbones": ("source", "strategy", "fold", "seed", "fraction"),
}


class EnsembleError(ValueError):
    """An ensemble that cannot be formed or scored; the message says which cells and why."""


def expand_ensembles(cells: list[RunSpec], strategies: list[str], suite_hparams: dict | None) -> list[RunSpec]:
    """One ensemble cell per group of `cells` that differ only along the ensemble's axis."""
    ensembles: list[RunSpec] = []
    for name in strategies:
        strategy = get_strategy(name)
        if not strategy.combines:
            continue
        hparams = strategy.resolve(suite_hparams)
        base = hparams["ensemble_of"]
        if base not in strategies or get_strategy(base).combines:
            raise EnsembleError(f"strategy {name!r} averages cells of strategy {base!r} (hparams.ensemble_of), which the "
                                f"suite does not train; add {base!r} to 'strategies' or set ensemble_of to one of "
                                f"{', '.join(s for s in strategies if not get_strategy(s).combines)}.")
        if strategy.combines == "seeds" and any(c.fold >= 0 for c in cells):
            # Each seed draws its own k-fold partition (repeated k-fold), so fold 0 of two seeds
            # holds different test rows: there is no shared test fold to average on.
            raise EnsembleError(f"strategy {name!r} needs the seeds to share their test rows, but with k-fold every seed "
                                "draws its own folds; use `folds: official` (a fixed test split), or ensemble-sources / "
                                "ensemble-backbones, whose members share the seed and so the folds.")
        groups: dict[tuple, list[RunSpec]] = defaultdict(list)
        for cell in cells:
            if cell.strategy == base:
                groups[tuple(getattr(cell, f) for f in GROUP_BY[strategy.combines])].append(cell)
        for members in groups.values():
            if len(members) < 2:
                raise EnsembleError(f"strategy {name!r} needs at least 2 {strategy.combines} to average; the suite has "
                                    f"one ({members[0].label}). Add {strategy.combines} or drop {name!r}.")
            ensembles.append(_ensemble_cell(members, name, strategy.combines, hparams))
    return ensembles


def _ensemble_cell(members: list[RunSpec], name: str, axis: str, hparams: dict) -> RunSpec:
    first = members[0]
    joined = {"seeds": {"seed": -1}, "sources": {"source": "+".join(sorted({m.source for m in members}))},
              "backbones": {"backbone": "+".join(sorted({m.backbone for m in members}))}}[axis]
    return replace(first, strategy=name, hparams=tuple(sorted(hparams.items())), weights="ensemble",
                   members=tuple(sorted(m.hash for m in members)), **joined)


def member_predictions(client, run_ids: list[str]) -> list[pd.DataFrame]:
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, run_id in enumerate(run_ids):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            frames.append(pd.read_csv(client.download_artifacts(run_id, PREDICTIONS, str(folder))))
    return frames


def average_predictions(frames: list[pd.DataFrame], class_names: list[str], multilabel: bool) -> tuple[list, np.ndarray, np.ndarray]:
    """(items, averaged probabilities (N, C), targets) of member prediction tables of one test fold."""
    target_column = "targets" if multilabel else "target"
    first = frames[0]
    for i, frame in enumerate(frames[1:], start=1):
        if not (frame["item"].astype(str).tolist() == first["item"].astype(str).tolist()
                and frame[target_column].astype(str).tolist() == first[target_column].astype(str).tolist()):
            raise EnsembleError(f"member {i} of the ensemble predicted other test rows (or targets) than member 0; "
                                "members must share the test fold (same task, fold and data).")
    columns = [f"p:{c}" for c in class_names]
    probs = np.mean([frame[columns].to_numpy(dtype=np.float64) for frame in frames], axis=0)
    if multilabel:
        targets = np.zeros((len(first), len(class_names)), dtype=np.int64)
        for row, labels in enumerate(first["targets"]):
            targets[row, json.loads(labels) if isinstance(labels, str) else labels] = 1
    else:
        targets = first["target"].to_numpy(dtype=np.int64)
    return first["item"].tolist(), probs, targets


def run_ensemble(spec: RunSpec, ctx, run, task) -> dict[str, float]:
    """Score ensemble `spec` from its members' FINISHED runs; logs like a trained cell."""
    from tracking import log_confusion_matrix, log_dataframe, log_json

    missing = [h for h in spec.members if h not in ctx.finished]
    if missing:
        raise EnsembleError(f"{spec.label}: member cell(s) {', '.join(missing)} have no FINISHED run; rerun the suite "
                            "once they finish (look for their FAILED runs by tag medtl.spec_hash).")
    runs = [ctx.finished[h] for h in spec.members]
    meta, names = task.meta, list(task.meta.class_names)
    multilabel = meta.kind == "multilabel"
    items, probs, targets = average_predictions(member_predictions(ctx.client, [r.info.run_id for r in runs]), names, multilabel)
    log_json(ctx.client, run.run_id, spec.to_dict(), "spec.json")
    # Multi-label: the members' validation-chosen thresholds, averaged (no test row chooses anything).
    threshold = float(np.mean([r.data.metrics.get("threshold", DEFAULT_THRESHOLD) for r in runs])) if multilabel else DEFAULT_THRESHOLD
    metrics, confmat = score(torch.tensor(probs), torch.tensor(targets), meta, threshold=threshold)
    if confmat is not None:
        log_confusion_matrix(ctx.client, run.run_id, confmat.numpy(), names, title=spec.label)
        log_dataframe(ctx.client, run.run_id, per_class_report(probs, targets, names), "per_class_report.csv", "test")
    else:
        log_dataframe(ctx.client, run.run_id, per_label_confusion(probs, targets, names, threshold), "per_label_confusion.csv", "test")
    log_dataframe(ctx.client, run.run_id, predictions_table(items, probs, targets, names, multilabel, threshold),
                  "predictions.csv", "test")
    if multilabel:
        metrics["threshold"] = threshold
    fps = [r.data.metrics.get("test/fps", float("nan")) for r in runs]
    metrics["test/fps"] = 1.0 / sum(1.0 / f for f in fps)  # members run one after another per image
    metrics["fit_seconds"] = sum(r.data.metrics.get("fit_seconds", 0.0) for r in runs)
    for key in ("cost/params", "cost/flops_per_image"):  # every member runs on every image
        metrics[key] = sum(r.data.metrics.get(key, float("nan")) for r in runs)
    metrics["ensemble/members"] = float(len(runs))
    metrics["data/test_rows"] = float(len(items))
    run.set_tags({"medtl.members": ",".join(r.info.run_id for r in runs)})
    run.log_metrics(metrics)
    return metrics
