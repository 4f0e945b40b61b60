"""Execute one cell (pretraining or fine-tuning) and record everything it produced in its MLflow run."""

from __future__ import annotations

import json
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mlflow.tracking import MlflowClient
from sklearn.metrics import classification_report, multilabel_confusion_matrix

from backbones import create_backbone
from benchmark.spec import RunSpec
from benchmark.throughput import measure_fps
from benchmark.weights import resolve_weights
from pretrain import pretrain_backbone
from tasks import Task, load_task
from tasks.training import TrainResult, train_and_test
from tracking import CellLogger, CellRun, log_confusion_matrix, log_dataframe, log_json


@dataclass
class CellContext:
    """What every cell of one suite invocation shares."""

    client: MlflowClient  # the store runs go to
    tracking_uri: str  # for Lightning's logger, which makes its own client
    data_root: Path | None  # --data-root; spec.data_path is relative to it
    cache_dir: Path  # downloaded pretraining checkpoints
    finished: dict  # spec hash -> FINISHED run, updated as cells finish
    throughput: dict = field(default_factory=dict)  # batch_size / warmup / batches
    accelerator: str = "auto"  # Lightning accelerator flag
    progress_position: int = 1  # Lightning's bars go under the suite's bar
    tasks: OrderedDict = field(default_factory=OrderedDict)  # recently loaded tasks, see load_cell_task


# Cells run source-by-source, then target, so two tasks cover the reuse; more would keep large
# in-memory sets (MedMNIST at 224 px is gigabytes) alive for nothing.
TASKS_KEPT = 2


def load_cell_task(spec: RunSpec, data_root: Path | None, cache: OrderedDict | None = None) -> Task:
    """The cell's task, indexed once per suite invocation (tasks are immutable, so cells share them)."""
    root = None
    if spec.data_path:
        root = (data_root / spec.data_path) if data_root is not None else Path(spec.data_path)
    key = (spec.task, str(root), json.dumps(spec.options, sort_keys=True, default=str))
    if cache is not None and key in cache:
        cache.move_to_end(key)
        return cache[key]
    task = load_task(spec.task, root, **spec.options)
    if cache is not None:
        cache[key] = task
        while len(cache) > TASKS_KEPT:
            cache.popitem(last=False)
    return task


def run_cell(spec: RunSpec, ctx: CellContext, run: CellRun) -> dict[str, float]:
    """Train and test `spec`, logging metrics and artifacts into `run`; returns the final metrics."""
    task = load_cell_task(spec, ctx.data_root, ctx.tasks)
    weights = resolve_weights(spec.weights, client=ctx.client, finished=ctx.finished, cache_dir=ctx.cache_dir)
    # Seed before building: scratch weights (and any head the backbone keeps) are drawn from the
    # global torch RNG, so without this two runs of one spec start from different networks.
    torch.manual_seed(spec.seed)
    backbone = create_backbone(spec.backbone, weights)
    log_json(ctx.client, run.run_id, spec.to_dict(), "spec.json")
    options = dict(
        logger=CellLogger(run.run_id, ctx.tracking_uri),
        accelerator=ctx.accelerator,
        devices=spec.devices,
        precision=spec.precision,
        progress_position=ctx.progress_position,
    )
    if spec.stage == "pretrain":
        with tempfile.TemporaryDirectory() as tmp:
            result, path = pretrain_backbone(
                task, backbone, out_dir=Path(tmp), hp=spec.hp, size=spec.image_size, seed=spec.seed,
                spec_hash=spec.hash, start_weights=spec.weights, **options,
            )
            ctx.client.log_artifacts(run.run_id, tmp, "pretrain")
    else:
        result = train_and_test(
            task, backbone, fold=spec.fold, k=spec.folds, seed=spec.seed, hp=spec.hp, size=spec.image_size,
            strategy=spec.strategy, fraction=spec.fraction, **options,
        )
    metrics = dict(result.metrics)
    metrics.update(_log_evaluation(spec, task, result, ctx, run))
    run.log_metrics({k: v for k, v in metrics.items() if not k.startswith("test/") or k in ("test/fps", "test/fps_pipeline")})
    return metrics


def _log_evaluation(spec: RunSpec, task: Task, result: TrainResult, ctx: CellContext, run: CellRun) -> dict[str, float]:
    """Confusion matrix, per-class report, predictions and throughput of the tested model."""
    module, fold = result.module, result.datamodule.fold
    names = list(task.meta.class_names)
    probs, targets = (t.numpy() for t in module.test_predictions())
    items = task.index["item"].to_numpy()[fold.test]
    if module.test_confmat is not None:
        matrix = module.test_confmat.compute().cpu().numpy()
        log_confusion_matrix(ctx.client, run.run_id, matrix, names, title=spec.label)
        predicted = probs.argmax(axis=1)
        report = classification_report(targets, predicted, labels=list(range(len(names))), target_names=names, output_dict=True, zero_division=0)
        log_dataframe(ctx.client, run.run_id, pd.DataFrame(report).T.rename_axis("class").reset_index(), "per_class_report.csv", "test")
        frame = pd.DataFrame({"item": items, "target": targets, "predicted": predicted})
    else:
        predicted = probs >= 0.5  # the threshold torchmetrics' multilabel metrics use
        per_label = multilabel_confusion_matrix(targets.astype(int), predicted.astype(int), labels=list(range(len(names))))
        counts = pd.DataFrame(per_label.reshape(len(names), 4), columns=["tn", "fp", "fn", "tp"])
        counts.insert(0, "label", names)
        log_dataframe(ctx.client, run.run_id, counts, "per_label_confusion.csv", "test")
        frame = pd.DataFrame({"item": items, "targets": [np.flatnonzero(t).tolist() for t in targets],
                              "predicted": [np.flatnonzero(p).tolist() for p in predicted]})
    for i, name in enumerate(names):
        frame[f"p:{name}"] = probs[:, i].round(6)
    log_dataframe(ctx.client, run.run_id, frame, "predictions.csv", "test")
    tp = ctx.throughput
    throughput = measure_fps(
        module, image_size=spec.image_size, batch_size=int(tp.get("batch_size", 32)), warmup=int(tp.get("warmup", 2)),
        batches=int(tp.get("batches", 5)), precision=spec.precision,
    )
    run.set_tags(throughput.params())
    return {
        "test/fps": throughput.fps,
        "test/fps_pipeline": len(fold.test) / max(result.test_seconds, 1e-9),
        "fit_seconds": result.fit_seconds,
        "data/train_rows": float(len(fold.train)),
        "data/val_rows": float(len(fold.val)),
        "data/test_rows": float(len(fold.test)),
    }
