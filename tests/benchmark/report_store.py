"""A store of fabricated fine-tuning cells for the report tests: the runs a suite would leave, without training.

Each cell's test predictions are drawn with a planted per-source accuracy, so a test knows which
differences are real; the metrics logged are scikit-learn's on those predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, precision_score, recall_score, roc_auc_score

from benchmark.report.leaderboard import trains
from benchmark.run.runner import cell_tags
from tracking.naming import suite_experiment
from tracking import ensure_experiment, flatten, log_dataframe, start_run
from tracking.artifacts import confusion_matrix_frame
from tracking.runs import ERROR_TAG, log_metrics, log_params

CLASSES = ["lesion_0deg", "lesion_45deg", "lesion_90deg", "lesion_135deg"]
CLASS_SHARE = [0.4, 0.3, 0.2, 0.1]


def _predictions(rng, fold: int, rows: int, accuracy: float, constant: bool = False) -> pd.DataFrame:
    targets = rng.choice(len(CLASSES), size=rows, p=CLASS_SHARE)
    right = rng.random(rows) < accuracy
    predicted = np.where(right, targets, rng.integers(0, len(CLASSES), rows))
    if constant:  # a model collapsed onto the majority class
        predicted = np.zeros(rows, dtype=int)
    logits = rng.normal(0, 1, (rows, len(CLASSES)))
    logits[np.arange(rows), predicted] += 12 if constant else 3  # constant: class 0 wins every argmax
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    frame = pd.DataFrame({"item": [f"f{fold}_{i}" for i in range(rows)], "target": targets, "predicted": probs.argmax(1)})
    for i, name in enumerate(CLASSES):
        frame[f"p:{name}"] = probs[:, i].round(6)
    return frame


def _metrics(frame: pd.DataFrame) -> dict[str, float]:
    y, p = frame["target"], frame["predicted"]
    probs = frame[[f"p:{c}" for c in CLASSES]].to_numpy()
    macro = dict(average="macro", zero_division=0)
    return {"test/mcc": matthews_corrcoef(y, p), "test/f1": f1_score(y, p, **macro), "test/rec": recall_score(y, p, **macro),
            "test/prec": precision_score(y, p, **macro), "test/acc_micro": accuracy_score(y, p),
            "test/auc": roc_auc_score(y, probs, multi_class="ovr", labels=list(range(len(CLASSES))))}


def fabricate(uri: str, suite, accuracy: dict[str, float], *, rows: int = 60, seed: int = 0,
              failed: set[str] = frozenset(), running: set[str] = frozenset(), killed: set[str] = frozenset(),
              constant: set[str] = frozenset()) -> str:
    """Runs for every cell of `suite` under one parent run; cells whose hash is in `failed` / `running` / `killed` end so
    (pretraining cells too: the fine-tuning cells that need an unfinished one get no run, as in a stopped suite).
    Sources in `constant` predict the first class for every image (a degenerate row)."""
    client = MlflowClient(uri)
    experiment_id = ensure_experiment(client, suite_experiment(suite.name))
    parent = start_run(client, experiment_id, name=f"suite {suite.name}", tags={"medtl.suite": suite.name, "medtl.stage": "suite"})
    rng = np.random.default_rng(seed)
    unfinished = set()
    for spec in (c for c in suite.cells if c.stage == "pretrain"):
        run_id = start_run(client, experiment_id, name=spec.label, tags=cell_tags(spec, suite), parent_id=parent)
        log_params(client, run_id, {"spec_hash": spec.hash, **flatten(spec.to_dict())})
        status = "KILLED" if spec.hash in killed else "FAILED" if spec.hash in failed else "FINISHED"
        if status != "FINISHED":
            unfinished.add(spec.hash)
        client.set_terminated(run_id, status)
    for spec in suite.finetune_cells:
        if spec.weights.startswith("cell:") and spec.weights[5:] in unfinished:
            continue  # the suite stopped before it: no run
        tags = {k: v for k, v in cell_tags(spec, suite).items() if not k.startswith("medtl.version")}
        run_id = start_run(client, experiment_id, name=spec.label, tags=tags, parent_id=parent)
        log_params(client, run_id, {"spec_hash": spec.hash, **flatten(spec.to_dict())})
        if spec.hash in running:
            continue  # a killed process leaves its run RUNNING
        if spec.hash in killed:
            client.set_terminated(run_id, "KILLED")
            continue
        if spec.hash in failed:
            client.set_tag(run_id, ERROR_TAG, "RuntimeError: CUDA out of memory (planted)")
            client.set_terminated(run_id, "FAILED")
            continue
        frame = _predictions(rng, spec.fold, rows, accuracy[spec.source], constant=spec.source in constant)
        train_rows = 3 * rows * spec.fraction  # 5-fold: 4 parts train + validation, the validation part 1 of them
        log_metrics(client, run_id, {**_metrics(frame), "test/fps": 1000.0, "fit_seconds": 2.0 / spec.fraction,
                                     "epochs_trained": 3 if trains(spec.strategy) else 0,
                                     "data/train_rows": train_rows, "data/test_rows": rows, "cost/params": 1e5,
                                     "cost/flops_per_image": 2e6 * (2 if spec.source == "better" else 1)})
        log_dataframe(client, run_id, frame, "predictions.csv", "test")
        counts = pd.crosstab(frame["target"], frame["predicted"]).reindex(index=range(4), columns=range(4), fill_value=0)
        log_dataframe(client, run_id, confusion_matrix_frame(counts.to_numpy(), CLASSES), "confusion_matrix.csv", "test", index=True)
        client.set_terminated(run_id, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    return parent
