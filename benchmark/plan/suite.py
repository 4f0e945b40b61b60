"""Suites: YAML files of axes to expand into cells (sources x backbones x strategies x folds x seeds x fractions).

    medtl benchmark benchmark/suites/smoke.yaml

Schema (see benchmark/suites/smoke.yaml for a commented example):
  name          suite name; the MLflow experiment is `medtl-<name>`
  target        {dataset, path (under --data-root, "" for generated), options,
                 extra_train: [{dataset, path, options, classes: [...]}]}: minority-class extension,
                 extra images of the named classes added to the training rows of every fine-tuning
                 cell, never to validation or test (tasks/data/extension.py)
  folds         k for stratified k-fold, or "official" for the dataset's own split
  seeds, fractions, backbones, strategies   lists (the axes)
  sources       mapping name -> {weights: scratch|imagenet|file:...|run:...}
                              or {pretrain: {dataset, path, options, weights (start), folds, hparams}}
                a pretraining cell holds out fold 0 of `folds` (default 5), or the official test
                split with `folds: official`, and records which in its spec
  hparams       overrides of the hyperparameter table (tasks/training/hparams.py and each strategy's own)
  image_size    network input side in pixels, or `native` for each backbone's own (224 for the
                ImageNet networks, 299 for the Inceptions: what ImageNet weights need)
  throughput    {batch_size, warmup, batches, memory_format: auto|channels_last|contiguous,
                 pipeline: auto|cpu|device (tasks/data/device_pipeline.py), compile: true|false
                 (torch.compile the training steps; tasks/training/speed.py)}: machine settings
  num_workers   DataLoader worker processes, or auto (default: none on CPUs, where the main process
                keeps up; up to 8 on GPUs with the cpu pipeline); a machine setting, not identity
  save_checkpoints  true: log each fine-tuning cell's tested (selected) Lightning checkpoint to its run
  hparams_from  optuna: each row's cells take the best trial of its study (storage $MEDTL_OPTUNA_STORAGE,
                default sqlite:///optuna.db) over the suite's hparams; see benchmark/tune/study.py
  tune_budget   N: `medtl benchmark` tunes every compared row with N trials before its fine-tuning cells
  tune          {scope: nested|shared}: nested (default) tunes one study per (row, outer fold) on that fold's
                training rows; shared tunes one per row on its first fold (optimistic; benchmark/plan/tuning.py)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.plan.ensembles import expand_ensembles
from benchmark.plan.spec import RunSpec
from benchmark.plan.schema import UniqueKeyLoader, error_message, hparam_errors, schema_errors
from benchmark.plan.tuning import DEFAULT_SCOPE, cell_study

KNOWN_KEYS = {"name", "description", "target", "folds", "seeds", "fractions", "backbones", "strategies",
              "sources", "hparams", "image_size", "throughput", "precision", "devices", "num_workers",
              "save_checkpoints", "hparams_from", "tune_budget", "tune"}


class SuiteError(ValueError):
    """A suite file that cannot be expanded; the message names the file and the key."""


@dataclass(frozen=True)
class Suite:
    name: str  # names the MLflow experiment and the report folder
    path: Path  # the YAML it came from
    cells: tuple[RunSpec, ...]  # pretraining cells first, then fine-tuning cells
    throughput: dict = field(default_factory=dict)  # batch_size / warmup / batches for FPS
    num_workers: int | str = "auto"  # DataLoader workers per cell (auto: chosen per device)
    save_checkpoints: bool = False  # keep the tested epoch's checkpoint as an artifact
    hparams_from: str = ""  # "optuna": cells use their row's best trial (benchmark/tune/study.py)
    tune_budget: int = 0  # trials per study tuned before the fine-tuning cells (0: no tuning)
    tune_scope: str = DEFAULT_SCOPE  # nested: a study per (row, outer fold); shared: one per row (benchmark/plan/tuning.py)

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
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML ({exc}).") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot be read ({exc}). Fix: a UTF-8 YAML file readable by you.") from exc
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: a suite is a YAML mapping (name:, target:, sources: ...), got {type(raw).__name__}. "
                         "Fix: start from benchmark/suites/smoke.yaml.")
    unknown = set(raw) - KNOWN_KEYS
    if unknown:
        raise SuiteError(f"{path}: unknown keys {sorted(map(str, unknown))}. Valid keys: {', '.join(sorted(KNOWN_KEYS))}. "
                         "Fix: delete them or correct their spelling.")
    validate(raw, path)
    try:
        cells = tuple(expand(raw, path))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SuiteError):
            raise
        raise SuiteError(f"{path}: {exc}") from exc
    return Suite(str(_need(raw, "name", path)), path, cells, dict(raw.get("throughput") or {}), raw.get("num_workers", "auto"),
                 bool(raw.get("save_checkpoints", False)), str(raw.get("hparams_from") or ""), int(raw.get("tune_budget") or 0),
                 _scope(raw))


def _scope(raw: dict) -> str:
    return str((raw.get("tune") or {}).get("scope", DEFAULT_SCOPE))


def validate(raw: dict, path: Path) -> None:
    """Every value of the suite, before any cell or MLflow run exists: shape, names, hyperparameters."""
    lines = schema_errors(raw)
    if lines:
        raise SuiteError(error_message(path, lines))
    check_names(raw, path)
    _check_hparam_names(raw, [str(s) for s in raw.get("strategies", ["full"])], path)
    lines = hparam_errors(raw, [str(s) for s in raw.get("strategies", ["full"])])
    if lines:
        raise SuiteError(error_message(path, lines))


def check_names(raw: dict, path: Path) -> None:
    """Fail on a misspelt dataset, backbone or strategy, or weights a backbone cannot take, before any cell trains."""
    from backbones import BackboneError, backbone_entry, check_weights
    from tasks.data import list_datasets
    from tasks.training import list_strategies

    sources = raw.get("sources") if isinstance(raw.get("sources"), dict) else {}
    datasets = {(raw.get("target") or {}).get("dataset")} | {
        (d or {}).get("pretrain", {}).get("dataset") for d in sources.values() if isinstance(d, dict)} | {
        e.get("dataset") for e in ((raw.get("target") or {}).get("extra_train") or []) if isinstance(e, dict)}
    for kind, valid, used in (("dataset", list_datasets(), datasets - {None}),
                              ("strategy", list_strategies(), set(raw.get("strategies") or ["full"]))):
        unknown = sorted(map(str, used - set(valid)))
        if unknown:
            raise SuiteError(f"{path}: unknown {kind} {', '.join(map(repr, unknown))}. Valid names: {', '.join(valid)}.")
    for name in raw.get("backbones") or []:
        try:
            backbone_entry(str(name))
        except BackboneError as exc:
            raise SuiteError(f"{path}: unknown backbone {name!r}. {exc}") from exc
        for source, definition in sources.items():
            definition = definition if isinstance(definition, dict) else {}
            weights = definition.get("weights") or (definition.get("pretrain") or {}).get("weights") or "scratch"
            if str(weights).startswith(CHAIN):  # another source's pretraining cell: checked when expanded
                continue
            try:
                check_weights(str(name), str(weights))
            except BackboneError as exc:
                raise SuiteError(f"{path}: sources.{source}: {exc}") from exc


CHAIN = "source:"  # a pretraining block's `weights: source:<name>` starts from that source's pretraining cell


def _start_weights(weights: str, source: str, earlier: dict[str, str], path: Path) -> str:
    """Where a pretraining cell starts: its `weights`, with `source:<name>` (double transfer: the
    cells chain, the second naming the first) resolved to that source's cell for this backbone."""
    if not weights.startswith(CHAIN):
        return weights
    ref = weights[len(CHAIN):]
    if not earlier.get(ref, "").startswith("cell:"):
        raise SuiteError(f"{path}: sources.{source}.pretrain.weights: {weights!r} names no pretraining source listed "
                         f"before {source!r} (pretraining sources so far: {', '.join(k for k, v in earlier.items() if v.startswith('cell:')) or 'none'}); "
                         f"list {ref!r} first, with a `pretrain:` block.")
    return earlier[ref]


def _folds(value: Any, key: str, path: Path) -> tuple[list[int], int]:
    if value == "official":
        return [-1], 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise SuiteError(f"{path}: {key!r} must be an integer >= 2 or 'official', got {value!r}.")
    return list(range(value)), value


def _task_options(dataset: str, options: dict | None) -> dict:
    """The adapter's options with their defaults filled in, so a changed default changes identity."""
    from tasks.data import option_defaults
    from tasks.data.registry import check_options

    options = dict(options or {})
    check_options(dataset, options)
    return {**option_defaults(dataset), **options}


def _check_hparam_names(raw: dict, strategies: list[str], path: Path) -> None:
    """A suite hyperparameter no strategy of the suite reads is a typo, not a no-op."""
    from tasks.training import get_strategy

    used = set()
    for name in {*strategies, "full"}:
        used |= set(get_strategy(name).table)
    blocks = [("hparams", raw.get("hparams"))] + [
        (f"sources.{s}.pretrain.hparams", (d.get("pretrain") or {}).get("hparams"))
        for s, d in (raw.get("sources") or {}).items() if isinstance(d, dict)]
    for where, block in blocks:
        unknown = sorted(set(block or {}) - used)
        if unknown:
            raise SuiteError(f"{path}: {where}: unknown hyperparameter(s) {', '.join(map(repr, unknown))}; the suite's "
                             f"strategies ({', '.join(strategies)}) read {', '.join(sorted(used))}.")


def _image_size(value: Any, backbone: str, path: Path) -> int:
    """The suite's image size for `backbone`: a number, or `native` (the backbone's own); never below its minimum."""
    from backbones.registry import input_config

    config = input_config(backbone)
    size = config.size if value == "native" else value
    if not isinstance(size, int) or isinstance(size, bool):
        raise SuiteError(f"{path}: 'image_size' must be a whole number of pixels or 'native', got {value!r}.")
    if size < config.min_size:
        raise SuiteError(f"{path}: image_size {size} is below what backbone {backbone!r} accepts ({config.min_size} px); "
                         f"set image_size >= {config.min_size}, or 'native' ({config.size} px), or pick another backbone.")
    return size


def _tuned(raw: dict, cell: RunSpec, path: Path) -> dict | None:
    """With `hparams_from: optuna`, the best trial params of `cell`'s study (benchmark/plan/tuning.py); else None."""
    if raw.get("hparams_from") != "optuna":
        return None
    from tasks.training import get_strategy
    from tracking.studies import best_params, storage_url

    if not get_strategy(cell.strategy).tunable:
        return None
    name = cell_study(str(raw["name"]), _scope(raw), cell)
    best = best_params(name)
    if best is None and not raw.get("tune_budget"):
        raise SuiteError(f"{path}: hparams_from: optuna, but study {name!r} in {storage_url()} has no COMPLETE trial. "
                         f"Fix: run `medtl tune {path}` first, or set `tune_budget: N` to tune before the cells run.")
    return best  # None before a tune_budget suite's first tuning: the runner reloads the suite after tuning


def _with_tuned(raw: dict, path: Path, cell: RunSpec) -> RunSpec:
    """`cell` with its study's best values over the suite's hyperparameters (nested: its own outer fold's study)."""
    from dataclasses import replace

    from tasks.training import get_strategy

    best = _tuned(raw, cell, path)
    if not best:
        return cell
    hparams = get_strategy(cell.strategy).resolve(raw.get("hparams"), best)
    get_strategy(cell.strategy).check(cell.backbone, hparams, image_size=cell.image_size)
    return replace(cell, hparams=tuple(sorted(hparams.items())))


def expand(raw: dict[str, Any], path: Path) -> list[RunSpec]:
    """Cells of the suite: each pretraining cell once per backbone, then the fine-tuning grid."""
    from tasks.training import get_strategy

    target = _need(raw, "target", path)
    sources = _need(raw, "sources", path)
    if not isinstance(sources, dict) or not sources:
        raise SuiteError(f"{path}: 'sources' must map source names to {{weights: ...}} or {{pretrain: ...}}.")
    backbones = _as_list(_need(raw, "backbones", path), "backbones", path)
    strategies = [str(s) for s in _as_list(raw.get("strategies", ["full"]), "strategies", path)]
    seeds = _as_list(raw.get("seeds", [0]), "seeds", path)
    fractions = _as_list(raw.get("fractions", [1.0]), "fractions", path)
    fold_ids, k = _folds(raw.get("folds", 3), "folds", path)
    _check_hparam_names(raw, strategies, path)
    common = {"precision": str(raw.get("precision", "32-true")), "devices": int(raw.get("devices", 1))}
    target_dataset = str(_need(target, "dataset", path))
    target_options = _task_options(target_dataset, target.get("options"))
    extra_train = [{"dataset": str(e["dataset"]), "path": str(e.get("path", "")),
                    "options": _task_options(str(e["dataset"]), e.get("options")), "classes": [str(c) for c in e["classes"]]}
                   for e in (target.get("extra_train") or [])]

    pretrain_cells: list[RunSpec] = []
    finetune_cells: list[RunSpec] = []
    for backbone in backbones:
        common["image_size"] = _image_size(raw.get("image_size", 224), str(backbone), path)
        source_weights: dict[str, str] = {}
        for source, definition in sources.items():
            definition = definition or {}
            if "pretrain" in definition:
                pre = definition["pretrain"]
                dataset = str(_need(pre, "dataset", path))
                pre_folds, pre_k = _folds(pre.get("folds", 5), f"sources.{source}.pretrain.folds", path)
                cell = RunSpec.build(
                    stage="pretrain",
                    task=dataset,
                    task_options=_task_options(dataset, pre.get("options")),
                    data_path=str(pre.get("path", "")),
                    fold=pre_folds[0],  # the held-out part: fold 0 of k, or the official test split
                    folds=pre_k,
                    seed=int(seeds[0]),
                    backbone=backbone,
                    weights=_start_weights(str(pre.get("weights", "scratch")), source, source_weights, path),
                    source=source,
                    strategy="full",
                    hparams=get_strategy("full").resolve(raw.get("hparams"), pre.get("hparams")),
                    **common,
                )
                pretrain_cells.append(cell)
                source_weights[source] = f"cell:{cell.hash}"
            elif "weights" in definition:
                source_weights[source] = str(definition["weights"])
            else:
                raise SuiteError(f"{path}: source {source!r} needs 'weights: ...' or 'pretrain: {{dataset: ...}}'.")
        for source, weights in source_weights.items():
            for strategy in (s for s in strategies if not get_strategy(s).combines):  # ensembles come last
                hparams = get_strategy(strategy).resolve(raw.get("hparams"))
                # A strategy that cannot apply (VLAD on a backbone without a spatial tap) fails here, before any cell.
                get_strategy(strategy).check(str(backbone), hparams, image_size=common["image_size"])
                for seed in seeds:
                    for fraction in fractions:
                        for fold in fold_ids:
                            finetune_cells.append(_with_tuned(raw, path,
                                RunSpec.build(
                                    stage="finetune",
                                    task=target_dataset,
                                    task_options=target_options,
                                    data_path=str(target.get("path", "")),
                                    fold=fold,
                                    folds=k,
                                    seed=int(seed),
                                    backbone=backbone,
                                    weights=weights,
                                    source=source,
                                    strategy=strategy,
                                    hparams=hparams,
                                    fraction=float(fraction),
                                    extra_train=extra_train,
                                    **common,
                                )
                            ))
    return pretrain_cells + finetune_cells + expand_ensembles(finetune_cells, strategies, raw.get("hparams"))
