"""Run one cell (pretraining or fine-tuning) and record everything it produced in its MLflow run.

    medtl benchmark benchmark/suites/smoke.yaml     # the runner calls `run_cell` once per cell

One cell, in order: its task (loaded once per suite invocation), its backbone and weights, the
fit/test routine (`tasks.training.train_and_test`, or `pretrain.pretrain_backbone`), then the
evaluation tables, the confusion matrix and the throughput, all logged to the cell's run.
"""

from __future__ import annotations

import json
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from backbones import create_backbone
from benchmark.cell.ensemble import run_ensemble
from benchmark.cell.evaluation import log_evaluation
from benchmark.cell.resume import ResumeFolder
from benchmark.plan.spec import RunSpec
from benchmark.cell.weights import MlflowWeights, provenance
from pretrain import pretrain_backbone
from tasks.data import Task, load_task
from tasks.data.extension import extend_training
from tasks.data.external import OFFICIAL, development_part
from tasks.training import Machine, TrainPlan, get_strategy, train_and_test
from tracking import CellLogger, CellRun, log_json
from tracking.naming import MACHINE_SETTINGS, effective_tag


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
    num_workers: int | str = "auto"  # DataLoader worker processes (auto: per device, tasks.data.device_pipeline)
    save_checkpoints: bool = False  # log the tested epoch's Lightning checkpoint as an artifact
    progress_position: int = 1  # Lightning's bars go under the suite's bar
    tasks: OrderedDict = field(default_factory=OrderedDict)  # recently loaded tasks, see load_cell_task
    externals: dict = field(default_factory=dict)  # external test sets, loaded once (benchmark.cell.external)


# Cells run source-by-source, then target, so two tasks cover the reuse; more would keep large
# in-memory sets (MedMNIST at 224 px is gigabytes) alive for nothing.
TASKS_KEPT = 2


def load_cell_task(spec: RunSpec, data_root: Path | None, cache: OrderedDict | None = None) -> Task:
    """The cell's task, indexed once per suite invocation (tasks are immutable, so cells share them)."""
    root = None
    if spec.data_path:
        root = (data_root / spec.data_path) if data_root is not None else Path(spec.data_path)
    key = (spec.task, str(root), json.dumps(spec.options, sort_keys=True, default=str), spec.extra_train, spec.external)
    if cache is not None and key in cache:
        cache.move_to_end(key)
        return cache[key]
    task = load_task(spec.task, root, **spec.options)
    if any(e.get("split") == OFFICIAL for e in spec.externals):  # the official test rows are an external set
        task = development_part(task)
    if spec.extra_train:
        task = _extended(task, spec, data_root)
    if cache is not None:
        cache[key] = task
        while len(cache) > TASKS_KEPT:
            cache.popitem(last=False)
    return task


def _extended(task: Task, spec: RunSpec, data_root: Path | None) -> Task:
    """The target plus its minority-class extensions (training rows only: tasks.data.extension)."""
    extensions = []
    for j, extension in enumerate(spec.extensions):
        path = extension["path"]
        root = ((data_root / path) if data_root is not None else Path(path)) if path else None
        extra = load_task(extension["dataset"], root, **extension["options"])
        extensions.append((extra, extension["classes"], f"target.extra_train[{j}] ({extension['dataset']} at {root})"))
    return extend_training(task, extensions)


def machine_for(spec: RunSpec, ctx: CellContext) -> Machine:
    """Where `spec` runs: its precision and devices, the suite's machine settings and this invocation's flags.
    Cells and tuning trials both call this, so a trial runs as the cells of its row do."""
    tp = ctx.throughput
    return Machine(
        accelerator=ctx.accelerator,
        devices=spec.devices,
        precision=spec.precision,
        num_workers=ctx.num_workers,
        # Machine settings (float rounding and speed, not identity): suite keys throughput.memory_format,
        # throughput.pipeline (per-image CPU augmentation, or a uint8 store augmented on the device) and
        # throughput.compile (torch.compile of the training steps; tasks.training.speed.Compile).
        memory_format=str(tp.get("memory_format", "auto")),
        pipeline=str(tp.get("pipeline", "auto")),
        compile=bool(tp.get("compile", False)),
        progress_position=ctx.progress_position,
    )


def plan_for(spec: RunSpec, hp: Mapping | None = None) -> TrainPlan:
    """What `spec` trains; `hp` replaces its hyperparameters (a trial's values)."""
    return TrainPlan(fold=spec.fold, k=spec.folds, seed=spec.seed, hp=spec.hp if hp is None else dict(hp),
                     size=spec.image_size, strategy=spec.strategy, fraction=spec.fraction)


@dataclass(frozen=True)
class CellHooks:
    """What a caller adds to the one route. A tuning trial: its pruning callbacks, its values, and no test pass."""

    callbacks: tuple = ()  # extra Lightning callbacks (a trial's pruner and score history)
    hp: Mapping | None = None  # hyperparameters replacing the spec's (a trial's resolved values)
    test: bool = True  # False: the fit is all the cell does (no test row is read, nothing is evaluated)
    epoch_logger: bool = True  # False: the caller logs epochs itself (a trial's history, under the epoch number)


def run_cell(spec: RunSpec, ctx: CellContext, run: CellRun, hooks: CellHooks = CellHooks()) -> dict[str, float]:
    """Train and test `spec`, logging metrics and artifacts into `run`; returns the final metrics.

    Every cell takes this route: pretraining (export the backbone), fine-tuning and frozen-feature
    strategies (`tasks.training.train_and_test`), ensembles (`benchmark.cell.ensemble`), and Optuna
    trials (`hooks`: pruning callbacks, the trial's values, no test pass).
    """
    task = load_cell_task(spec, ctx.data_root, ctx.tasks)
    if get_strategy(spec.strategy).combines:
        return run_ensemble(spec, ctx, run, task)
    resolver = MlflowWeights(ctx.client, ctx.finished, ctx.cache_dir)
    # Seed before building: scratch weights (and any head the backbone keeps) are drawn from the
    # global torch RNG, so without this two runs of one spec start from different networks.
    torch.manual_seed(spec.seed)
    backbone = create_backbone(spec.backbone, spec.weights, resolve=resolver.resolve)
    log_json(ctx.client, run.run_id, spec.to_dict(), "spec.json")
    ctx.client.log_param(run.run_id, "provenance", provenance(spec.backbone, spec.weights, ctx.finished))
    plan, machine = plan_for(spec, hooks.hp), machine_for(spec, ctx)
    # A cell (not a trial: Optuna fails a dead trial) checkpoints every epoch; a killed one resumes (benchmark.cell.resume).
    resume = ResumeFolder.of(spec, ctx.cache_dir) if hooks.test and get_strategy(spec.strategy).trains else None
    previous = resume.start(run) if resume is not None else None
    if resume is not None:
        machine = replace(machine, resume_dir=resume.path)
    logger = CellLogger(run.run_id, ctx.tracking_uri) if hooks.epoch_logger else None
    options = dict(logger=logger, callbacks=list(hooks.callbacks))
    if spec.stage == "pretrain":
        with tempfile.TemporaryDirectory() as tmp:
            result, _ = pretrain_backbone(task, backbone, plan, machine, out_dir=Path(tmp), spec_hash=spec.hash,
                                          start_weights=spec.weights, **options)
            ctx.client.log_artifacts(run.run_id, tmp, "pretrain")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            keep = Path(tmp) / "best.ckpt" if ctx.save_checkpoints and hooks.test else None
            result = train_and_test(task, backbone, plan, machine, keep_checkpoint=keep, test=hooks.test, **options)
            if keep is not None and keep.is_file():
                ctx.client.log_artifact(run.run_id, str(keep), "checkpoints")
    # What training really ran in (bf16 on an emulating CPU runs as asked, with a warning: tasks.training.speed).
    run.set_tags({effective_tag(k): str(v) for k, v in result.extra.items() if k in MACHINE_SETTINGS})
    if resume is not None:
        resume.record(ctx.client, run, result.extra, previous)
    metrics = dict(result.metrics)
    if not hooks.test:
        return metrics
    evaluation = log_evaluation(spec, task, result, ctx, run)
    # test/* of the fit went to the run through Lightning's logger already; the evaluation's are new.
    run.log_metrics({**{k: v for k, v in metrics.items() if not k.startswith("test/")}, **evaluation})
    metrics.update(evaluation)
    if resume is not None:
        resume.clean()  # the run holds everything now; a kill before this resumes at the last epoch and tests again
    return metrics
