"""Suites: YAML files of axes to expand into cells (sources x backbones x strategies x folds x seeds x fractions).

    medtl benchmark benchmark/suites/smoke.yaml

Schema (see benchmark/suites/smoke.yaml for a commented example):
  name          suite name; the MLflow experiment is `medtl-<name>`
  target        {dataset, path (under --data-root, "" for generated), options}
  folds         k for stratified k-fold, or "official" for the dataset's own split
  seeds, fractions, backbones, strategies   lists (the axes)
  sources       mapping name -> {weights: scratch|imagenet|file:...|run:...}
                              or {pretrain: {dataset, path, options, weights (start), hparams}}
  hparams       overrides of benchmark/hparams.py for fine-tuning cells
  image_size    network input side in pixels
  throughput    {batch_size, warmup, batches}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.hparams import resolve
from benchmark.spec import RunSpec

KNOWN_KEYS = {"name", "description", "target", "folds", "seeds", "fractions", "backbones", "strategies",
              "sources", "hparams", "image_size", "throughput", "precision", "devices"}


class SuiteError(ValueError):
    """A suite file that cannot be expanded; the message names the file and the key."""


@dataclass(frozen=True)
class Suite:
    name: str  # names the MLflow experiment and the report folder
    path: Path  # the YAML it came from
    cells: tuple[RunSpec, ...]  # pretraining cells first, then fine-tuning cells
    throughput: dict = field(default_factory=dict)  # batch_size / warmup / batches for FPS

    @property
    def finetune_cells(self) -> tuple[RunSpec, ...]:
        return tuple(c for c in self.cells if c.stage == "finetune")


def _need(raw: dict, key: str, path: Path):
    if key not in raw:
        raise SuiteError(f"{path}: missing required key {key!r}.")
    return raw[key]


def _as_list(value, key: str, path: Path) -> list:
    if not isinstance(value, list) or not value:
        raise SuiteError(f"{path}: {key!r} must be a non-empty list, got {value!r}.")
    return value


def load_suite(path: Path | str) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"Suite file {path} not found; the built-in suites are in benchmark/suites/.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML ({exc}).") from exc
    unknown = set(raw) - KNOWN_KEYS
    if unknown:
        raise SuiteError(f"{path}: unknown keys {sorted(unknown)}. Valid keys: {', '.join(sorted(KNOWN_KEYS))}.")
    try:
        cells = tuple(expand(raw, path))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SuiteError):
            raise
        raise SuiteError(f"{path}: {exc}") from exc
    check_names(cells, path)
    return Suite(str(_need(raw, "name", path)), path, cells, dict(raw.get("throughput") or {}))


def check_names(cells: tuple[RunSpec, ...], path: Path) -> None:
    """Fail on a misspelt dataset, backbone or strategy before any cell trains."""
    from backbones import list_backbones
    from tasks import list_datasets, list_strategies

    for kind, valid, used in (
        ("dataset", list_datasets(), {c.task for c in cells}),
        ("backbone", list_backbones(), {c.backbone for c in cells}),
        ("strategy", list_strategies(), {c.strategy for c in cells}),
    ):
        unknown = sorted(used - set(valid))
        if unknown:
            raise SuiteError(f"{path}: unknown {kind} {', '.join(map(repr, unknown))}. Valid names: {', '.join(valid)}.")


def _folds(raw: dict, path: Path) -> tuple[list[int], int]:
    folds = raw.get("folds", 3)
    if folds == "official":
        return [-1], 0
    if not isinstance(folds, int) or folds < 2:
        raise SuiteError(f"{path}: 'folds' must be an integer >= 2 or 'official', got {folds!r}.")
    return list(range(folds)), folds


def expand(raw: dict[str, Any], path: Path) -> list[RunSpec]:
    """Cells of the suite: each pretraining cell once per backbone, then the fine-tuning grid."""
    target = _need(raw, "target", path)
    sources = _need(raw, "sources", path)
    if not isinstance(sources, dict) or not sources:
        raise SuiteError(f"{path}: 'sources' must map source names to {{weights: ...}} or {{pretrain: ...}}.")
    backbones = _as_list(_need(raw, "backbones", path), "backbones", path)
    strategies = _as_list(raw.get("strategies", ["full"]), "strategies", path)
    seeds = _as_list(raw.get("seeds", [0]), "seeds", path)
    fractions = _as_list(raw.get("fractions", [1.0]), "fractions", path)
    fold_ids, k = _folds(raw, path)
    size = int(raw.get("image_size", 224))
    common = {"image_size": size, "precision": str(raw.get("precision", "32-true")), "devices": int(raw.get("devices", 1))}
    hp = resolve(raw.get("hparams"))

    pretrain_cells: list[RunSpec] = []
    finetune_cells: list[RunSpec] = []
    for backbone in backbones:
        source_weights: dict[str, str] = {}
        for source, definition in sources.items():
            definition = definition or {}
            if "pretrain" in definition:
                pre = definition["pretrain"]
                cell = RunSpec.build(
                    stage="pretrain",
                    task=str(_need(pre, "dataset", path)),
                    task_options=pre.get("options"),
                    data_path=str(pre.get("path", "")),
                    fold=0,
                    folds=5,
                    seed=int(seeds[0]),
                    backbone=backbone,
                    weights=str(pre.get("weights", "scratch")),
                    source=source,
                    strategy="full",
                    hparams=resolve(raw.get("hparams"), pre.get("hparams")),
                    **common,
                )
                pretrain_cells.append(cell)
                source_weights[source] = f"cell:{cell.hash}"
            elif "weights" in definition:
                source_weights[source] = str(definition["weights"])
            else:
                raise SuiteError(f"{path}: source {source!r} needs 'weights: ...' or 'pretrain: {{dataset: ...}}'.")
        for source, weights in source_weights.items():
            for strategy in strategies:
                for seed in seeds:
                    for fraction in fractions:
                        for fold in fold_ids:
                            finetune_cells.append(
                                RunSpec.build(
                                    stage="finetune",
                                    task=str(_need(target, "dataset", path)),
                                    task_options=target.get("options"),
                                    data_path=str(target.get("path", "")),
                                    fold=fold,
                                    folds=k,
                                    seed=int(seed),
                                    backbone=backbone,
                                    weights=weights,
                                    source=source,
                                    strategy=str(strategy),
                                    hparams=hp,
                                    fraction=float(fraction),
                                    **common,
                                )
                            )
    return pretrain_cells + finetune_cells
