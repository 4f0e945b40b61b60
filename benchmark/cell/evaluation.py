"""What a tested cell logs besides its metrics: tables, predictions, calibration, throughput and cost.

    medtl benchmark benchmark/suites/smoke.yaml     # every fine-tuning and pretraining cell, after its test pass

Artifacts under `test/`: confusion_matrix.{png,csv} or per_label_confusion.csv, per_class_report.csv,
predictions.csv and reliability.csv (equal-mass bins, tasks.training.calibration); under `external/<name>/`
the predictions on each external test set (benchmark.cell.external).
"""

from __future__ import annotations

import torch

from benchmark.cell.external import log_external
from benchmark.plan.spec import RunSpec
from benchmark.speed.cost import model_cost
from benchmark.speed.throughput import measure_fps
from tasks.data import Task
from tasks.training import TrainResult
from tasks.training.calibration import cell_calibration, reliability_table
from tasks.training.evaluation import per_class_report, per_label_confusion, predictions_table
from tasks.training.metrics import DEFAULT_THRESHOLD, score
from tracking import CellRun, log_confusion_matrix, log_dataframe

CALIBRATION_BINS = 15  # equal-mass bins of ECE and the reliability table


def log_evaluation(spec: RunSpec, task: Task, result: TrainResult, ctx, run: CellRun) -> dict[str, float]:
    """Confusion matrix, per-class tables, predictions, calibration and throughput of the tested model; returns
    the metrics it adds (test/fps, calibration test/ece[_ts], test/brier[_ts], test/nll[_ts], cost, data sizes)."""
    module, fold = result.module, result.datamodule.fold
    names = list(task.meta.class_names)
    probs, targets = (t.numpy() for t in module.test_predictions())
    items = task.index["item"].to_numpy()[fold.test]
    # Multi-label cells decide at the threshold chosen on validation rows (tasks.training.metrics).
    threshold = float(getattr(module, "threshold", DEFAULT_THRESHOLD))
    if module.test_confmat is not None:
        log_confusion_matrix(ctx.client, run.run_id, module.test_confmat.compute().cpu().numpy(), names, title=spec.label)
        log_dataframe(ctx.client, run.run_id, per_class_report(probs, targets, names), "per_class_report.csv", "test")
    else:
        log_dataframe(ctx.client, run.run_id, per_label_confusion(probs, targets, names, threshold),
                      "per_label_confusion.csv", "test")
    log_dataframe(ctx.client, run.run_id, predictions_table(items, probs, targets, names, module.multilabel, threshold),
                  "predictions.csv", "test")
    calibration = cell_calibration(result, bins=CALIBRATION_BINS)
    # The suite's positive class (Rahman's pneumonia recall / precision / F1), from the tested predictions, so every
    # strategy (trained, frozen-feature) reports it the same way.
    positive = {k: v for k, v in score(torch.as_tensor(probs), torch.as_tensor(targets), task.meta,
                                       threshold=threshold, positive_class=spec.positive_class)[0].items()
                if k.startswith("test/pos/")} if spec.positive_class else {}
    if not module.multilabel and len(targets):
        log_dataframe(ctx.client, run.run_id, reliability_table(probs, targets, CALIBRATION_BINS), "reliability.csv", "test")
    tp = ctx.throughput
    throughput = measure_fps(
        module, image_size=spec.image_size, batch_size=int(tp.get("batch_size", 32)), warmup=int(tp.get("warmup", 2)),
        batches=int(tp.get("batches", 5)), precision=spec.precision, memory_format=str(tp.get("memory_format", "auto")),
    )
    run.set_tags(throughput.params())
    return {
        **calibration,
        **positive,
        "test/fps": throughput.fps,
        "test/fps_pipeline": len(fold.test) / max(result.test_seconds, 1e-9),
        "fit_seconds": result.fit_seconds,
        "selected_epoch": float(result.selected_epoch),
        "epochs_trained": float(result.epochs_trained),
        "data/train_rows": float(len(fold.train)),
        "data/val_rows": float(len(fold.val)),
        "data/test_rows": float(len(fold.test)),
        **({"threshold": threshold} if module.multilabel else {}),
        **model_cost(module, spec.image_size),
        **log_external(spec, task, result, ctx, run),  # external/<name>/*: the suite's external test sets
    }
