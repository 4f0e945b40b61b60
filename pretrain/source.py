"""Pretrain a backbone on a source task (LapGyn4 + Cataract-101, a generated source, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tasks import Task
from tasks.training import TrainResult, train_and_test

from pretrain.export import export_backbone


def pretrain_backbone(
    task: Task,
    backbone,
    *,
    out_dir: Path,
    hp: Mapping,
    size: int,
    seed: int,
    spec_hash: str,
    start_weights: str,
    **train_options,
) -> tuple[TrainResult, Path]:
    """Train on `task` (its official test split, or fold 0 of 5, held out) and export the backbone.

    The export's provenance records what a fine-tuning cell must be able to trace: source task,
    its classes, epochs, the starting weights (imagenet -> a double-transfer chain), metrics and
    the pretraining cell's spec hash.
    """
    # The official test split when the source has one; a train-only file (e.g. a subset release)
    # falls back to holding out fold 0 of 5, so the export still reports held-out source metrics.
    has_test = bool((task.index["split"] == "test").any())
    held_out_fold, folds = (-1, 0) if has_test else (0, 5)
    result = train_and_test(task, backbone, fold=held_out_fold, k=folds, seed=seed, hp=hp, size=size, **train_options)
    provenance = {
        "backbone": backbone.name,
        "source": task.meta.name,
        "classes": list(task.meta.class_names),
        "epochs": int(hp["epochs"]),
        "image_size": size,
        "start_weights": start_weights,
        "spec_hash": spec_hash,
        "metrics": result.metrics,
    }
    return result, export_backbone(result.module.backbone, out_dir, provenance)
