"""Score an ensemble cell from its members' logged test predictions, and log it like a trained cell.

    strategies: [full, ensemble-seeds]      # in a suite: the seeds of a row averaged on its test rows
    strategies: [full, ensemble-folds]      # Hicks et al.'s 3-averaged run: the fold models on target.external

Scoring reads each member's `test/predictions.csv` from MLflow, checks that they predict the same
test rows in the same order with the same targets, averages the class probabilities, and scores
them with the metrics every trained cell uses. Cost: inference time per image is the sum of the
members' (FPS combine as 1 / sum(1 / fps)), training time the sum of their fit times. With external test sets
the members' external predictions are averaged and scored the same way (benchmark.cell.external).
"""

from __future__ import annotations

import json
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmark.cell.external import log_external_ensemble
from benchmark.plan.ensembles import EnsembleError
from benchmark.plan.spec import RunSpec
from tasks.training.evaluation import per_class_report, per_label_confusion, predictions_table
from tasks.training import get_strategy
from tasks.training.metrics import DEFAULT_THRESHOLD, score
from tracking import log_confusion_matrix, log_dataframe, log_json
from tracking.naming import MEMBERS_TAG

PREDICTIONS = "test/predictions.csv"


def member_predictions(client, run_ids: list[str], path: str = PREDICTIONS) -> list[pd.DataFrame]:
    """Each member run's predictions table at artifact `path` (its test rows, or an external set's)."""
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, run_id in enumerate(run_ids):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            frames.append(pd.read_csv(client.download_artifacts(run_id, path, str(folder))))
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
    """Score ensemble `spec` from its members' FINISHED runs; logs like a trained cell. `ensemble-folds` has no shared
    in-domain test rows (each fold model was tested on its own fold) and is scored on the external sets only."""
    missing = [h for h in spec.members if h not in ctx.finished]
    if missing:
        raise EnsembleError(f"{spec.label}: member cell(s) {', '.join(missing)} have no FINISHED run; rerun the suite "
                            "once they finish (look for their FAILED runs by tag medtl.spec_hash).")
    runs = [ctx.finished[h] for h in spec.members]
    meta = task.meta
    multilabel = meta.kind == "multilabel"
    log_json(ctx.client, run.run_id, spec.to_dict(), "spec.json")
    # Multi-label: the members' validation-chosen thresholds, averaged (no test row chooses anything).
    threshold = float(np.mean([r.data.metrics.get("threshold", DEFAULT_THRESHOLD) for r in runs])) if multilabel else DEFAULT_THRESHOLD
    metrics = {} if get_strategy(spec.strategy).combines == "folds" else _score_test_rows(spec, ctx, run, runs, meta, threshold)
    metrics.update(log_external_ensemble(spec, ctx, run, runs, meta, threshold, partial(member_predictions, ctx.client),
                                         average_predictions))
    if multilabel:
        metrics["threshold"] = threshold
    fps = [r.data.metrics.get("test/fps", float("nan")) for r in runs]
    metrics["test/fps"] = 1.0 / sum(1.0 / f for f in fps)  # members run one after another per image
    metrics["fit_seconds"] = sum(r.data.metrics.get("fit_seconds", 0.0) for r in runs)
    for key in ("cost/params", "cost/flops_per_image"):  # every member runs on every image
        metrics[key] = sum(r.data.metrics.get(key, float("nan")) for r in runs)
    metrics["ensemble/members"] = float(len(runs))
    run.set_tags({MEMBERS_TAG: ",".join(r.info.run_id for r in runs)})
    run.log_metrics(metrics)
    return metrics


def _score_test_rows(spec: RunSpec, ctx, run, runs: list, meta, threshold: float) -> dict[str, float]:
    """The members' averaged predictions on their shared test rows, scored and logged under test/."""
    names, multilabel = list(meta.class_names), meta.kind == "multilabel"
    items, probs, targets = average_predictions(member_predictions(ctx.client, [r.info.run_id for r in runs]), names, multilabel)
    metrics, confmat = score(torch.tensor(probs), torch.tensor(targets), meta, threshold=threshold)
    if confmat is not None:
        log_confusion_matrix(ctx.client, run.run_id, confmat.numpy(), names, title=spec.label)
        log_dataframe(ctx.client, run.run_id, per_class_report(probs, targets, names), "per_class_report.csv", "test")
    else:
        log_dataframe(ctx.client, run.run_id, per_label_confusion(probs, targets, names, threshold), "per_label_confusion.csv", "test")
    log_dataframe(ctx.client, run.run_id, predictions_table(items, probs, targets, names, multilabel, threshold),
                  "predictions.csv", "test")
    metrics["data/test_rows"] = float(len(items))
    return metrics
