"""Suites: YAML files of axes to expand into cells (sources x backbones x strategies x folds x seeds x fractions).

    medtl benchmark benchmark/suites/smoke.yaml

Schema (see benchmark/suites/smoke.yaml for a commented example):
  name          suite name; the MLflow experiment is `medtl-<name>`
  target        {dataset, path (under --data-root, "" for generated), options, positive_class (binary
                 targets: the class whose recall / precision / F1 are also reported),
                 extra_train: [{dataset, path, options, classes: [...]}]}: minority-class extension,
                 extra images of the named classes added to the training rows of every fine-tuning
                 cell, never to validation or test (tasks/data/extension.py),
                 external: [{name, dataset, path, options} | {name, split: official}]: test sets every
                 fine-tuning cell is also scored on (external/<name>/*; benchmark/cell/external.py), another
                 site's data with the target's class names, or the target's official test split (the
                 cells then run k-fold on its development rows); `ensemble-folds` averages the k fold
                 models there (Hicks et al.'s 3-averaged run)
  folds         k for stratified k-fold, or "official" for the dataset's own split
  seeds, fractions, backbones, strategies   lists (the axes); a fraction is a share of the training
                rows in (0, 1] or, as an int > 1, a number of training images (`fractions: [657]`)
  sources       mapping name -> {weights: scratch|imagenet|file:...|run:...}
                              or {pretrain: {dataset, path, options, weights (start), folds, hparams}}
                a pretraining cell holds out fold 0 of `folds` (default 5), or the official test
                split with `folds: official`, and records which in its spec. Call the no-weights
                source `scratch`; `none`, its earlier name, still reads (both hash as before:
                benchmark.plan.spec.SOURCE_IDENTITY)
  hparams       overrides of the hyperparameter table (tasks/training/hparams.py and each strategy's own)
  grid          hyperparameter axes: name -> list of values, e.g. {scales: [[224], [448]], vlad_k: [64, 256]};
                each strategy gets one row per combination of the names it reads, shown as
                `vlad[scales=[224],vlad_k=64]` (a grid name a strategy does not read leaves its rows single)
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
  repeats       {until: decided, max_seeds: N}: add seeds in rounds until the top rows' comparison is decided
                (group-sequential; benchmark/run/repeats.py, benchmark/report/sequential.py)
  tune_budget   N: `medtl benchmark` tunes every compared study with N trials before its fine-tuning cells
  tune          {scope: nested|shared}: nested (default) tunes one study per (row, outer fold) on that fold's
                training rows; shared tunes one per row on its first fold (optimistic; benchmark/plan/tuning.py)
  transferability  false: skip LogME / H-score of every source x backbone before fine-tuning (default true;
                benchmark/cell/transferability.py)

Every key, its type and its default are in `benchmark.plan.schema.SuiteModel`, the one description
of a suite: the file is read once, validated once into that model, checked against the registries
(`benchmark.plan.checks`), and `expand` reads the model.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from benchmark.plan.checks import CHAIN, check_suite
from benchmark.plan.ensembles import expand_ensembles
from benchmark.plan.schema import ExtraTrain, Folds, SuiteError, SuiteModel, UniqueKeyLoader, parse_suite
from benchmark.plan.spec import RunSpec
from benchmark.plan.tuning import DEFAULT_SCOPE, cell_study

__all__ = ["Suite", "SuiteError", "load_suite", "expand", "read_suite"]


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its validated description and the cells it expands into."""

    path: Path  # the YAML it came from
    model: SuiteModel  # the validated file, every default filled in (benchmark.plan.schema)
    cells: tuple[RunSpec, ...]  # pretraining cells first, then fine-tuning cells, then ensembles

    @property
    def name(self) -> str:
        """Names the MLflow experiment and the report folder."""
        return self.model.name

    @property
    def throughput(self) -> dict:
        """batch_size / warmup / batches for FPS, and the machine settings memory_format / pipeline / compile."""
        return self.model.throughput.model_dump()

    @property
    def num_workers(self) -> int | str:
        """DataLoader workers per cell (auto: chosen per device)."""
        return self.model.num_workers

    @property
    def save_checkpoints(self) -> bool:
        """Keep the tested epoch's checkpoint as an artifact."""
        return self.model.save_checkpoints

    @property
    def hparams_from(self) -> str:
        """"optuna": cells use their row's best trial (benchmark/tune/study.py); "" otherwise."""
        return self.model.hparams_from or ""

    @property
    def tune_budget(self) -> int:
        """Trials per row tuned before the fine-tuning cells (0: no tuning)."""
        return self.model.tune_budget or 0

    @property
    def repeats(self) -> dict | None:
        """{until, max_seeds}: seeds added in rounds (benchmark/plan/repeats.py); None for a fixed design."""
        return self.model.repeats.model_dump() if self.model.repeats else None

    @property
    def tune_scope(self) -> str:
        """nested: a study per (row, outer fold); shared: one per row (benchmark/plan/tuning.py)."""
        return _scope(self.model)

    @property
    def transferability(self) -> bool:
        """Score every source x backbone before fine-tuning (benchmark/cell/transferability.py)."""
        return self.model.transferability

    @property
    def finetune_cells(self) -> tuple[RunSpec, ...]:
        return tuple(c for c in self.cells if c.stage == "finetune")


def read_suite(path: Path | str, *, check: bool = True) -> SuiteModel:
    """The suite file read once and validated once (shape, then names and hyperparameters); SuiteError if not.
    `check=False` validates the shape only (a stand-in replaces the datasets and weights the checks would look up)."""
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
    model = parse_suite(raw, path)
    if check:
        check_suite(model, path)
    return model


def load_suite(path: Path | str) -> Suite:
    """The suite at `path`, validated and expanded into cells (nothing trains, no image is read)."""
    path = Path(path)
    model = read_suite(path)
    try:
        cells = tuple(expand(model, path))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SuiteError):
            raise
        raise SuiteError(f"{path}: {exc}") from exc
    return Suite(path, model, cells)


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


def _folds(value: Folds) -> tuple[list[int], int]:
    """(the test folds, k): every fold of k-fold, or the official split (fold -1, k 0)."""
    return ([-1], 0) if value == "official" else (list(range(value)), value)


def _task_options(dataset: str, options: dict | None) -> dict:
    """The adapter's options with their defaults filled in, so a changed default changes identity."""
    from tasks.data import option_defaults
    from tasks.data.registry import check_options

    options = dict(options or {})
    check_options(dataset, options)
    return {**option_defaults(dataset), **options}


def _image_size(value: Any, backbone: str, path: Path) -> int:
    """The suite's image size for `backbone`: a number, or `native` (the backbone's own); never below its minimum."""
    from backbones.registry import input_config

    config = input_config(backbone)
    size = config.size if value == "native" else value
    if size < config.min_size:
        raise SuiteError(f"{path}: image_size {size} is below what backbone {backbone!r} accepts ({config.min_size} px); "
                         f"set image_size >= {config.min_size}, or 'native' ({config.size} px), or pick another backbone.")
    return size


def _scope(suite: SuiteModel) -> str:
    return suite.tune.scope if suite.tune is not None else DEFAULT_SCOPE


def _tuned(suite: SuiteModel, cell, path: Path) -> dict | None:
    """With `hparams_from: optuna`, the best trial params of `cell`'s study (benchmark/plan/tuning.py: nested, its
    outer fold's); else None. `cell`: the cell's row and fold fields (task, backbone, source, strategy, folds, seed, fold)."""
    if suite.hparams_from != "optuna":
        return None
    from tasks.training import get_strategy
    from tracking.studies import best_params, storage_url

    if not get_strategy(cell.strategy).tunable:
        return None
    name = cell_study(suite.name, _scope(suite), cell)
    best = best_params(name)
    if best is None and not suite.tune_budget:
        raise SuiteError(f"{path}: hparams_from: optuna, but study {name!r} in {storage_url()} has no COMPLETE trial. "
                         f"Fix: run `medtl tune {path}` first, or set `tune_budget: N` to tune before the cells run.")
    return best  # None before a tune_budget suite's first tuning: the runner reloads the suite after tuning


def _external(entries: list | None, k: int, path: Path) -> list[dict]:
    """The external test sets as the spec records them (adapter defaults filled in); `split: official` needs k-fold."""
    out = []
    for j, e in enumerate(entries or []):
        e = e.model_dump() if hasattr(e, "model_dump") else e  # the raw mapping, or schema.External once validated
        if e.get("split") == "official":
            if k == 0:
                raise SuiteError(f"{path}: target.external[{j}] ({e['name']}): split: official with folds: official would "
                                 "test on the official test split twice. Fix: set folds to a number (k-fold on the "
                                 "development rows), or drop this external set.")
            out.append({"name": str(e["name"]), "split": "official"})
        else:
            out.append({"name": str(e["name"]), "dataset": str(e["dataset"]), "path": str(e.get("path", "")),
                        "options": _task_options(str(e["dataset"]), e.get("options"))})
    return out


def _extra_train(extra: list[ExtraTrain] | None) -> list[dict]:
    """The minority-class extensions as the spec records them, adapter defaults filled in."""
    return [{"dataset": e.dataset, "path": e.path, "options": _task_options(e.dataset, e.options), "classes": list(e.classes)}
            for e in extra or []]


def _shown(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)


def grid_rows(grid: dict[str, list] | None, table: dict) -> list[tuple[str, dict[str, Any]]]:
    """(variant label, {name: value}) per combination of the `grid` names in `table` (a strategy's hyperparameters),
    in the suite's order; [("", {})] when the strategy reads none of them (its cells stay single)."""
    axes = {name: values for name, values in (grid or {}).items() if name in table}
    if not axes:
        return [("", {})]
    rows = []
    for combination in itertools.product(*axes.values()):
        values = dict(zip(axes, combination))
        rows.append((";".join(f"{name}={_shown(v)}" for name, v in values.items()), values))
    return rows


def expand(suite: SuiteModel, path: Path) -> list[RunSpec]:
    """Cells of the validated suite: each pretraining cell once per backbone, then the fine-tuning grid, then ensembles."""
    from tasks.training import get_strategy

    fold_ids, k = _folds(suite.folds)
    common = {"precision": suite.precision, "devices": suite.devices}
    target = suite.target
    target_options = _task_options(target.dataset, target.options)
    extra_train = _extra_train(target.extra_train)
    external = _external(target.external, k, path)
    trained = [s for s in suite.strategies if not get_strategy(s).combines]  # ensembles come last

    pretrain_cells: list[RunSpec] = []
    finetune_cells: list[RunSpec] = []
    for backbone in suite.backbones:
        common["image_size"] = _image_size(suite.image_size, backbone, path)
        source_weights: dict[str, str] = {}
        for source, definition in suite.sources.items():
            if definition.backbones is not None and backbone not in definition.backbones:
                continue  # the source names the backbones it applies to
            pre = definition.pretrain
            if pre is None:
                source_weights[source] = definition.weights
                continue
            pre_folds, pre_k = _folds(pre.folds)
            cell = RunSpec.build(
                stage="pretrain", task=pre.dataset, task_options=_task_options(pre.dataset, pre.options), data_path=pre.path,
                fold=pre_folds[0],  # the held-out part: fold 0 of k, or the official test split
                folds=pre_k, seed=suite.seeds[0], backbone=backbone,
                weights=_start_weights(pre.weights, source, source_weights, path), source=source, strategy="full",
                hparams=get_strategy("full").resolve(suite.hparams, pre.hparams), **common)
            pretrain_cells.append(cell)
            source_weights[source] = f"cell:{cell.hash}"
        for source, weights in source_weights.items():
            for name in trained:
                strategy = get_strategy(name)
                for variant, values in grid_rows(suite.grid, strategy.table):
                    for seed, fraction, fold in itertools.product(suite.seeds, suite.fractions, fold_ids):
                        # Tuned values come from the cell's study: nested, its own outer fold's (benchmark/plan/tuning.py).
                        tuned = _tuned(suite, SimpleNamespace(task=target.dataset, backbone=backbone, source=source,
                                                              strategy=name, folds=k, seed=seed, fold=fold), path)
                        hparams = strategy.resolve(suite.hparams, tuned, values)
                        # A strategy that cannot apply (VLAD on a backbone without a spatial tap) fails here, before any cell.
                        strategy.check(backbone, hparams, image_size=common["image_size"])
                        finetune_cells.append(RunSpec.build(
                            stage="finetune", task=target.dataset, task_options=target_options, data_path=target.path,
                            fold=fold, folds=k, seed=seed, backbone=backbone, weights=weights, source=source,
                            strategy=name, hparams=hparams, fraction=fraction, extra_train=extra_train, external=external,
                            positive_class=target.positive_class or "", variant=variant, **common))
    return pretrain_cells + finetune_cells + expand_ensembles(finetune_cells, suite.strategies, suite.hparams)


DRY_RUN_COLUMNS = ("stage", "source", "backbone", "strategy", "fold", "seed", "fraction", "hash")


def cell_table(suite: Suite) -> str:
    """The suite's cells as a plain-text table (what `medtl benchmark SUITE --dry-run` prints), count first."""
    rows = [(c.stage, c.source, c.backbone, c.row_strategy, "official" if c.fold < 0 else str(c.fold),
             "all" if c.seed < 0 else str(c.seed), f"n{c.fraction}" if c.is_count else f"{c.fraction:g}", c.hash) for c in suite.cells]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(DRY_RUN_COLUMNS)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    pretrain = sum(c.stage == "pretrain" for c in suite.cells)
    head = (f"Suite {suite.name} ({suite.path}): {len(suite.cells)} cells ({pretrain} pretraining, "
            f"{len(suite.finetune_cells)} fine-tuning); nothing was run.")
    return "\n".join([head, line(DRY_RUN_COLUMNS), *map(line, rows)])
