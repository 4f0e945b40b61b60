"""A validated suite against the registries: names that exist, weights a backbone can take, hyperparameters.

    medtl benchmark my-suite.yaml --dry-run     # these checks, then the cells; nothing trains

`benchmark.plan.schema` checks a suite's shape; what it names (datasets, strategies, backbones,
hyperparameters and their values) is checked here against the registries and the one hyperparameter
table (`tasks.training.hparams.HParam.check`), once, on the validated `SuiteModel`. A binary target's
`positive_class` needs the task's class names, so it is checked where the task is loaded
(`positive_class_error`, called by the pre-run data check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from benchmark.plan.schema import SuiteError, SuiteModel, error_message

CHAIN = "source:"  # a pretraining block's `weights: source:<name>` starts from that source's pretraining cell


def check_suite(suite: SuiteModel, path: Path) -> None:
    """Every name and hyperparameter of the validated suite against the registries; SuiteError on the first kind."""
    check_names(suite, path)
    check_hparam_names(suite, path)
    lines = hparam_value_errors(suite)
    if lines:
        raise SuiteError(error_message(path, lines))


def check_names(suite: SuiteModel, path: Path) -> None:
    """Fail on a misspelt dataset, backbone or strategy, or weights a backbone cannot take, before any cell trains."""
    from backbones import BackboneError, backbone_entry, check_weights
    from tasks.data import list_datasets
    from tasks.training import list_strategies

    datasets = {suite.target.dataset} | {d.pretrain.dataset for d in suite.sources.values() if d.pretrain} | {
        e.dataset for e in suite.target.extra_train or []} | {e.dataset for e in suite.target.external or [] if e.dataset}
    for kind, valid, used in (("dataset", list_datasets(), datasets), ("strategy", list_strategies(), set(suite.strategies))):
        unknown = sorted(used - set(valid))
        if unknown:
            raise SuiteError(f"{path}: unknown {kind} {', '.join(map(repr, unknown))}. Valid names: {', '.join(valid)}.")
    _check_scratch(suite, path)
    for name in suite.backbones:
        try:
            backbone_entry(name)
        except BackboneError as exc:
            raise SuiteError(f"{path}: unknown backbone {name!r}. {exc}") from exc
        for source, definition in suite.sources.items():
            weights = definition.weights or definition.pretrain.weights
            if weights.startswith(CHAIN):  # another source's pretraining cell: checked when expanded
                continue
            try:
                check_weights(name, weights)
            except BackboneError as exc:
                raise SuiteError(f"{path}: sources.{source}: {exc}") from exc


def _check_scratch(suite: SuiteModel, path: Path) -> None:
    """`scratch` names the no-weights source, and `none` is its earlier name: both hash alike (spec.SOURCE_IDENTITY)."""
    if "scratch" in suite.sources and "none" in suite.sources:
        raise SuiteError(f"{path}: sources: 'none' and 'scratch' are one source (none is scratch's earlier name; their "
                         "cells would be the same cells). Fix: keep one of them.")
    scratch = suite.sources.get("scratch")
    if scratch is not None and scratch.weights != "scratch":
        raise SuiteError(f"{path}: sources.scratch: the name 'scratch' means no pretrained weights, but this source "
                         "starts from other weights. Fix: give it `weights: scratch`, or another name.")


def _table(suite: SuiteModel) -> dict:
    """name -> HParam over every strategy of the suite, and `full` (what pretraining cells train with)."""
    from tasks.training import get_strategy

    table: dict = {}
    for name in {*suite.strategies, "full"}:
        table.update(get_strategy(name).table)
    return table


def _blocks(suite: SuiteModel) -> Iterator[tuple[str, dict[str, Any]]]:
    """(suite key, {hyperparameter: value}) of every place a suite sets hyperparameters; grid values one by one."""
    yield "hparams", suite.hparams or {}
    for source, definition in suite.sources.items():
        if definition.pretrain is not None:
            yield f"sources.{source}.pretrain.hparams", definition.pretrain.hparams or {}
    for name, values in (suite.grid or {}).items():
        for i, value in enumerate(values):
            yield f"grid.{name}[{i}]", {name: value}


def check_hparam_names(suite: SuiteModel, path: Path) -> None:
    """A suite hyperparameter no strategy of the suite reads is a typo, not a no-op; a grid axis is not also fixed."""
    used = set(_table(suite))
    for where, block in _blocks(suite):
        unknown = sorted(set(block) - used)
        if unknown:
            where = where.split("[")[0]
            raise SuiteError(f"{path}: {where}: unknown hyperparameter(s) {', '.join(map(repr, unknown))}; the suite's "
                             f"strategies ({', '.join(suite.strategies)}) read {', '.join(sorted(used))}.")
    both = sorted(set(suite.grid or {}) & set(suite.hparams or {}))
    if both:
        raise SuiteError(f"{path}: grid: {', '.join(map(repr, both))} also given in 'hparams'. Fix: a hyperparameter "
                         "is either fixed (hparams) or an axis (grid); delete it from one of them.")


def hparam_value_errors(suite: SuiteModel) -> list[str]:
    """Hyperparameter values checked against the table: one line each, with the valid range and the default."""
    table = _table(suite)
    lines = []
    for where, block in _blocks(suite):
        for name, value in block.items():
            try:
                table[name].check(name, value)
            except ValueError as exc:
                entry = table[name]
                valid = (f"one of {', '.join(map(str, entry.choices))}" if entry.choices else
                         f"a value of type {entry.type.__name__}" + (f" >= {entry.low}" if entry.low is not None else "")
                         + (f" and <= {entry.high}" if entry.high is not None else ""))
                shown = where if where.startswith("grid.") else f"{where}.{name}"
                lines.append(f"{shown}: {exc}. Fix: set it to {valid} (default {entry.default!r}).")
    return lines


def positive_class_error(positive_class: str, classes: list[str] | tuple[str, ...]) -> str | None:
    """Why `positive_class` does not fit a target with `classes` (None when it does): unknown, or not binary."""
    if positive_class not in classes:
        return (f"target.positive_class {positive_class!r} is not a class of the target (it has {', '.join(classes)}). "
                "Fix: write one of them.")
    if len(classes) != 2:
        return (f"target.positive_class {positive_class!r} names a class of a target with {len(classes)} classes; a "
                "positive class belongs to a binary target. Fix: delete positive_class (the report gives per-class "
                "tables for every class).")
    return None
