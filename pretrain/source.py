"""Pretrain a backbone on a source task (LapGyn4 + Cataract-101, a generated source, ...)."""

from __future__ import annotations

from pathlib import Path

from tasks.data import Task
from tasks.training import Machine, TrainPlan, TrainResult, train_and_test

from pretrain.export import export_backbone


def pretrain_backbone(task: Task, backbone, plan: TrainPlan, machine: Machine = Machine(), *, out_dir: Path,
                      spec_hash: str, start_weights: str, **fit_options) -> tuple[TrainResult, Path]:
    """Train on `task` with `plan.fold` of `plan.k` held out (-1: the official test split) and export the backbone.

    The held-out part gives the source metrics in the export's provenance; the pretraining cell's
    spec records which part that was. The provenance records what a fine-tuning cell must be able
    to trace: source task, its classes, epochs, the starting weights (imagenet -> a double-transfer
    chain), the held-out split, metrics and the pretraining cell's spec hash.
    """
    result = train_and_test(task, backbone, plan, machine, **fit_options)
    fold, k, hp = plan.fold, plan.k, plan.hp
    provenance = {
        "backbone": backbone.name,
        "source": task.meta.name,
        "classes": list(task.meta.class_names),
        "epochs": int(hp["epochs"]),
        "image_size": plan.size,
        "start_weights": start_weights,
        "held_out": "official test split" if fold < 0 else f"fold {fold} of {k}",
        "spec_hash": spec_hash,
        "metrics": result.metrics,
    }
    return result, export_backbone(result.module.backbone, out_dir, provenance)
