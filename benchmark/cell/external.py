"""External validation: every tested fine-tuning cell also predicts the target's external test sets.

    target:
      external:
        - {name: site-b, dataset: class-folders, path: site-b}   # another site's data, the target's class names
        - {name: official-test, split: official}                 # the official test split (folds on the rest)

After its test pass a cell predicts each external set with the tested weights (a trained cell through
its datamodule's evaluation transforms; a frozen-feature cell, svm / vlad / knn / fewshot, through its
fitted head on the set's cached features, as its test rows were scored) and logs, per set `<name>`:
  metrics    external/<name>/mcc, f1, ..., micro/*, auc (the test/* metric set, tasks.training.metrics.score),
             external/<name>/rows
  artifacts  external/<name>/predictions.csv (the format of test/predictions.csv), confusion_matrix.csv
Ensemble cells average their members' external predictions (`log_external_ensemble`); `ensemble-folds`
(Hicks et al.'s 3-averaged run) is scored on the external sets only. External scores come from the
external images alone: the cell's own rows never enter them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmark.plan.spec import RunSpec
from tasks.data import DataError, Task, load_task
from tasks.data.datamodule import IndexedImages
from tasks.data.device_pipeline import loader_workers
from tasks.data.external import OFFICIAL, align_classes, official_test_part
from tasks.data.index import TaskMeta
from tasks.data.transforms import eval_preset
from tasks.training.evaluation import predictions_table
from tasks.training.features import content_digests, tap_features
from tasks.training.metrics import DEFAULT_THRESHOLD, score
from tasks.training.speed import to_format
from tasks.training.strategies.svm import FrozenFeatureClassifier, targets_of
from tracking import log_dataframe
from tracking.artifacts import confusion_matrix_frame
from tracking.naming import EXTERNAL, external_predictions, external_prefix

def _root(data_root: Path | None, path: str) -> Path | None:
    if not path:
        return None
    return (data_root / path) if data_root is not None else Path(path)


def load_external(spec: RunSpec, target: TaskMeta, data_root: Path | None, cache: dict | None = None) -> list[tuple[str, Task]]:
    """(name, task) of every external set of `spec`, read with the target's class list (`tasks.data.external`);
    DataError naming the suite key, the folder and both class lists when a set cannot be scored."""
    out = []
    for j, entry in enumerate(spec.externals):
        official = entry.get("split") == OFFICIAL
        dataset, path = (spec.task, spec.data_path) if official else (entry["dataset"], entry["path"])
        options = spec.options if official else entry["options"]
        root = _root(data_root, path)
        where = f"target.external[{j}] ({entry['name']}: {dataset}{f' at {root}' if root is not None else ''})"
        key = (json.dumps(entry, sort_keys=True, default=str), spec.task, spec.data_path, str(data_root),
               json.dumps(spec.options, sort_keys=True, default=str), target.class_names)
        if cache is not None and key in cache:
            out.append((entry["name"], cache[key]))
            continue
        if root is not None and not root.exists():
            raise DataError(f"{where}: {root} does not exist. Fix: correct target.external[{j}].path (it is under "
                            "--data-root), or pass the --data-root that holds it.")
        try:
            task = load_task(dataset, root, **options)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from exc
        task = align_classes(official_test_part(task, where) if official else task, target, where)
        if cache is not None:
            cache[key] = task
        out.append((entry["name"], task))
    return out


def _device(accelerator: str) -> torch.device:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@torch.inference_mode()
def predict(module, task: Task, *, size: int, mean, std, batch_size: int = 32, accelerator: str = "cpu",
            num_workers: int = 0, feature_cache: Path | None = None) -> np.ndarray:
    """(N, C) probabilities of every row of `task` (index order) by a tested cell's model.

    A trained model (`ClassifierModule`) sees the images through the evaluation transforms its test rows had
    (resize + the backbone's mean / std); a frozen-feature model (`FrozenFeatureClassifier`: svm, vlad, knn,
    fewshot) reads the set's features at each of its scales from the feature cache and applies its fitted
    encoder and head, exactly as its test rows were scored."""
    device = _device(accelerator)
    if isinstance(module, FrozenFeatureClassifier):
        digests = content_digests(task, module.backbone)
        per_scale = [tap_features(task, module.backbone, tap=module.tap, scale=s, pool=module.encoder.pool,
                                  cache_dir=feature_cache, accelerator=accelerator, batch_size=batch_size,
                                  num_workers=num_workers, digests=digests).array for s in module.scales]
        return np.asarray(module.probabilities_of(per_scale), dtype=np.float64)
    loader = DataLoader(IndexedImages(task, np.arange(len(task.index)), eval_preset(size=size, mean=mean, std=std)),
                        batch_size=batch_size, shuffle=False, num_workers=num_workers)
    home, was_training = next(module.parameters()).device, module.training
    module.to(device).eval()
    layout = getattr(module, "input_memory_format", None)
    chunks = []
    try:
        for images, _ in loader:
            x = images.to(device)
            x = to_format(x, layout) if layout else x
            chunks.append(module.probabilities(module(x)).float().cpu().numpy())
    finally:
        module.to(home).train(was_training)
    return np.concatenate(chunks).astype(np.float64)


def _log_scored(ctx, run, name: str, items, probs: np.ndarray, targets: np.ndarray, meta: TaskMeta, *,
                threshold: float, positive_class=None) -> dict[str, float]:
    """Score one external set's predictions with the cells' metric code and log its tables; returns the metrics."""
    multilabel = meta.kind == "multilabel"
    metrics, confmat = score(torch.tensor(np.asarray(probs)), torch.tensor(np.asarray(targets)), meta,
                             prefix=external_prefix(name), threshold=threshold, positive_class=positive_class)
    folder = f"{EXTERNAL}/{name}"
    log_dataframe(ctx.client, run.run_id, predictions_table(list(items), probs, targets, list(meta.class_names), multilabel,
                                                            threshold), "predictions.csv", folder)
    if confmat is not None:
        log_dataframe(ctx.client, run.run_id, confusion_matrix_frame(confmat.numpy(), list(meta.class_names)),
                      "confusion_matrix.csv", folder, index=True)
    if not multilabel and len(np.unique(targets)) < 2:  # ROC AUC is undefined on one class (torchmetrics would say 0)
        metrics.pop(f"{external_prefix(name)}auc", None)
    metrics[f"{external_prefix(name)}rows"] = float(len(targets))
    return metrics


def log_external(spec: RunSpec, task: Task, result, ctx, run) -> dict[str, float]:
    """Predict and score every external set of `spec` with the tested model of `result`; log the predictions.
    Returns the external/<name>/* metrics (none when the suite names no external set)."""
    if not spec.external:
        return {}
    module, datamodule = result.module, result.datamodule
    threshold = float(getattr(module, "threshold", DEFAULT_THRESHOLD))  # multi-label: chosen on validation rows
    positive = getattr(module, "positive_class", None)
    workers = loader_workers(ctx.num_workers, ctx.accelerator, "cpu")
    metrics: dict[str, float] = {}
    for name, external in load_external(spec, task.meta, ctx.data_root, getattr(ctx, "externals", None)):
        probs = predict(module, external, size=datamodule.size, mean=datamodule.mean, std=datamodule.std,
                        batch_size=int(spec.hp.get("batch_size", 32)), accelerator=ctx.accelerator, num_workers=workers)
        targets = targets_of(external, np.arange(len(external.index)))
        metrics.update(_log_scored(ctx, run, name, external.index["item"].tolist(), probs, targets, external.meta,
                                   threshold=threshold, positive_class=positive))
    return metrics


def log_external_ensemble(spec: RunSpec, ctx, run, runs: list, meta: TaskMeta, threshold: float,
                          read_members, average) -> dict[str, float]:
    """An ensemble's external scores: its members' external predictions averaged per set and scored.
    `read_members(run_ids, path)` and `average(frames, names, multilabel)` are benchmark.cell.ensemble's."""
    metrics: dict[str, float] = {}
    for entry in spec.externals:
        name = entry["name"]
        frames = read_members([r.info.run_id for r in runs], external_predictions(name))
        items, probs, targets = average(frames, list(meta.class_names), meta.kind == "multilabel")
        metrics.update(_log_scored(ctx, run, name, items, probs, targets, meta, threshold=threshold))
    return metrics
