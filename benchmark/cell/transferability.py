"""Transferability before training: LogME and H-score of every (source, backbone) of a suite, from frozen features.

    medtl benchmark SUITE     # after the pretraining cells, before any fine-tuning cell (suite key
                              # `transferability: false` turns it off)

For each (source, backbone) of the suite's fine-tuning cells, once per suite invocation: the backbone
with the source's weights (a pretraining cell's export, ImageNet's, scratch), the features of the
target's training rows of the first cell's split (fold 0 of k-fold, or the official training rows;
the full training set, fraction 1), read through the same cache the svm / knn / fewshot strategies
use (`tasks.training.strategies.svm.cell_features`: the same tap, scales and pooling, so a suite with
a frozen-feature strategy extracts each image once for both), then `tasks.training.transferability`'s
`logme` and `h_score` on them. Scores go to the suite's parent run as metrics
transferability/{logme,h_score}/<source>/<backbone> and as the table transferability/transferability.csv,
which the report's Transferability section compares with the fine-tuned rows' order.

Nothing here may fail the suite: a (source, backbone) that cannot be scored (its pretraining cell
failed, its images do not load) gets its error in the table's `error` column, and anything else is a
warning. Cost: one forward pass over the training rows per (source, backbone) on a cache miss.
"""

from __future__ import annotations

import re
import time
import warnings

import numpy as np
import pandas as pd
import torch

from backbones import create_backbone
from benchmark.cell.route import CellContext, load_cell_task, machine_for
from benchmark.cell.weights import MlflowWeights
from benchmark.plan.spec import RunSpec
from tasks.data.device_pipeline import loader_workers
from tasks.data.splits import make_fold
from tasks.training.strategies import get_strategy
from tasks.training.strategies.probes import probe_encoder
from tasks.training.strategies.svm import SCALES, TAP, cell_features, targets_of
from tasks.training.transferability import h_score, logme
from tracking import log_dataframe
from tracking.naming import TRANSFERABILITY, TRANSFERABILITY_TABLE
from tracking.runs import log_metrics

FEATURE_PARAMS = ("tap", "scales")  # what decides the features (and their cache entry) besides task and backbone
COLUMNS = ["source", "backbone", "weights", "logme", "h_score", "rows", "dimension", "fold", "tap", "scales", "seconds", "error"]


def scored_pairs(suite) -> list[RunSpec]:
    """One fine-tuning cell per (source, backbone), in suite order, whose backbone, weights and split are scored:
    the first fold and seed; its feature settings from a frozen-feature cell of the pair where the suite has one."""
    chosen: dict[tuple[str, str], RunSpec] = {}
    for spec in suite.finetune_cells:
        if get_strategy(spec.strategy).combines:
            continue  # ensembles have no backbone of their own
        key = (spec.source, spec.backbone)
        best = chosen.get(key)
        if best is None or (spec.seed, spec.fold) < (best.seed, best.fold):
            chosen[key] = spec
    return list(chosen.values())


def feature_settings(suite, spec: RunSpec) -> dict[str, str]:
    """tap and scales as the pair's svm / knn / fewshot cells read them (their cache entries), else svm's defaults."""
    for other in suite.finetune_cells:
        if (other.source, other.backbone) == (spec.source, spec.backbone) and all(k in other.hp for k in FEATURE_PARAMS):
            return {k: other.hp[k] for k in FEATURE_PARAMS}
    return {"tap": TAP.default, "scales": SCALES.default}


def score_pair(suite, spec: RunSpec, ctx: CellContext) -> dict:
    """LogME and H-score of `spec`'s backbone and weights on its split's training rows (see the module docstring)."""
    start = time.perf_counter()
    task = load_cell_task(spec, ctx.data_root, ctx.tasks)
    torch.manual_seed(spec.seed)  # as run_cell seeds: the same scratch weights, so the same feature cache entry
    backbone = create_backbone(spec.backbone, spec.weights, resolve=MlflowWeights(ctx.client, ctx.finished, ctx.cache_dir).resolve)
    fold = make_fold(task, fold=spec.fold, k=spec.folds, seed=spec.seed)
    hp = feature_settings(suite, spec)
    machine = machine_for(spec, ctx)
    cell = cell_features(task, backbone, hp, strategy="svm", spatial=False, make_encoder=probe_encoder, size=spec.image_size,
                         accelerator=machine.accelerator, num_workers=loader_workers(machine.num_workers, machine.accelerator, "cpu"),
                         cache_dir=machine.feature_cache)
    train = np.asarray(fold.train)
    x, y = cell.encode(train), targets_of(task, train)
    return {"logme": logme(x, y), "h_score": h_score(x, y), "rows": len(train), "dimension": x.shape[1], "fold": spec.fold,
            "tap": cell.tap, "scales": ",".join(map(str, cell.scales)), "seconds": time.perf_counter() - start, "error": ""}


def metric_key(score: str, source: str, backbone: str) -> str:
    """transferability/<score>/<source>/<backbone>, with characters MLflow refuses in a metric name (hub:org/x) as _."""
    clean = lambda text: re.sub(r"[^A-Za-z0-9_\-. ]", "_", text)  # noqa: E731
    return f"{TRANSFERABILITY}/{score}/{clean(source)}/{clean(backbone)}"


def suite_transferability(suite, ctx: CellContext, parent_id: str, echo=print) -> pd.DataFrame | None:
    """Score every (source, backbone) and log the table and metrics to `parent_id`; None when the suite turns it off.
    Never raises an Exception: a failure is a warning (and, per pair, a row with its error)."""
    if not getattr(suite, "transferability", True):
        return None
    try:
        records = []
        for spec in scored_pairs(suite):
            base = {"source": spec.source, "backbone": spec.backbone, "weights": spec.weights}
            try:
                records.append({**base, **score_pair(suite, spec, ctx)})
            except Exception as exc:  # noqa: BLE001 - one pair's failure (e.g. its pretraining cell FAILED) is its row's note
                records.append({**base, "logme": np.nan, "h_score": np.nan, "error": f"{type(exc).__name__}: {exc}"})
                warnings.warn(f"Transferability of {spec.source}/{spec.backbone} not computed: {type(exc).__name__}: {exc}",
                              stacklevel=2)
        table = pd.DataFrame(records, columns=COLUMNS)
        log_dataframe(ctx.client, parent_id, table, TRANSFERABILITY_TABLE, TRANSFERABILITY)
        log_metrics(ctx.client, parent_id, {metric_key(score, r["source"], r["backbone"]): float(r[score])
                                            for r in records for score in ("logme", "h_score") if np.isfinite(r[score])})
        scored = table.dropna(subset=["logme"])
        echo(f"Transferability (LogME, H-score) of {len(scored)} of {len(table)} source x backbone pairs on the target's "
             f"training rows, logged to parent run {parent_id} ({TRANSFERABILITY}/{TRANSFERABILITY_TABLE}).")
        return table
    except Exception as exc:  # noqa: BLE001 - a diagnostic; the fine-tuning cells must run whatever happens here
        warnings.warn(f"Transferability scores not computed ({type(exc).__name__}: {exc}); the suite goes on.", stacklevel=2)
        return None
