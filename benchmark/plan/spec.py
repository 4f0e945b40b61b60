"""RunSpec: everything that defines one cell. The hash of its identity is the cell's name everywhere.

    >>> spec.hash          # '3f1c...' (16 hex digits): MLflow tag medtl.spec_hash, resume key, Optuna key

Identity = the sorted JSON of every field, with two things left out because they do not change
the result: adapter options the dataset's card calls settings (cache folders), and hyperparameters
or options at their declared neutral value (added after cells were recorded, at the value that
reproduces the earlier behaviour). So an upgrade that adds such a knob leaves every finished cell
finished, and changing a default (or any value a cell uses) makes a new cell.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

STAGES = ("pretrain", "finetune")
RECORDED_ONLY = ("allow_duplicates",)  # dataset options every adapter accepts that never change a result
FORMAT = 2  # of identity; runs carry it as tag medtl.spec_format (benchmark.run.migrate converts format 1)
# Source names as identity records them. The no-weights source was called `none` until `scratch`
# replaced it (issue 22: `none` also reads as "no value" in tables); hashing the new name as the old
# one keeps every finished cell of a suite whose source was renamed finished. A suite file may still
# write `none` (same cells, same hashes).
SOURCE_IDENTITY = {"scratch": "none"}


def _canonical(entries) -> tuple[str, ...]:
    """Mappings as sorted JSON (hashable, order of keys irrelevant); strings are kept as they are."""
    return tuple(json.dumps(e, sort_keys=True, default=str) if not isinstance(e, str) else e for e in entries)


def _frozen(mapping: dict | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((mapping or {}).items()))


@dataclass(frozen=True)
class RunSpec:
    """One cell of a suite. Fields that change results are here; paths, servers and machine settings are not."""

    stage: str  # "pretrain" (train on a source, export the backbone) or "finetune" (on the target)
    task: str  # dataset registry name, e.g. "gen-target", "medmnist"
    task_options: tuple[tuple[str, Any], ...]  # adapter options, defaults resolved (flag, size, parts...)
    data_path: str  # path under --data-root ("" for generated data); relative so hashes travel
    fold: int  # test fold, or -1 for the dataset's official test split
    folds: int  # k of k-fold (0 with an official split)
    seed: int  # seeds Lightning, the validation carve-out, subsets, augmentations and initial weights
    backbone: str  # backbones registry name
    weights: str  # scratch | imagenet | file:<path> | run:<id> | cell:<hash of a pretrain cell>
    source: str  # what the weights were learnt on, for the leaderboard: none, imagenet, gen-general...
    strategy: str  # a registered strategy (tasks.training.strategies)
    hparams: tuple[tuple[str, Any], ...] = field(default=())  # the strategy's resolved hyperparameters, sorted
    image_size: int = 224  # side of the square network input
    # Training rows kept: a float in (0, 1] is a share (data-efficiency curves), an int > 1 that many
    # images (Hicks et al.'s 657-image run; tasks.data.fractions). An int hashes as an int, so a
    # share and a count never share a cell, and every float hashes as before.
    fraction: float | int = 1.0
    precision: str = "32-true"  # Lightning precision flag
    devices: int = 1  # accelerators per cell (DDP when > 1)
    members: tuple[str, ...] = ()  # ensemble cells: the hashes of the cells whose predictions they average
    # Minority-class extensions of the training rows (tasks.data.extension): one canonical JSON
    # {dataset, path, options, classes} each, in the suite's order.
    extra_train: tuple[str, ...] = ()
    # External test sets (suite key target.external; benchmark.cell.external): one canonical JSON each,
    # {name, dataset, path, options} (another site's data) or {name, split: "official"} (the target's
    # official test split, the cells then running k-fold on its development rows), in the suite's order.
    external: tuple[str, ...] = ()
    # A binary target's positive class (suite key target.positive_class), whose recall, precision
    # and F1 the cell also reports; "" for none. Identity only when given, so cells without it hash as before.
    positive_class: str = ""
    # The suite's `grid` values this cell takes, e.g. "vlad_k=64": a label that keeps per-value rows
    # apart in the report. Not identity: the values themselves are in `hparams`.
    variant: str = ""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"Unknown stage {self.stage!r}. Valid stages: {', '.join(STAGES)}.")

    @staticmethod
    def build(*, task_options: dict | None = None, hparams: dict | None = None, members=(), extra_train=(),
              external=(), **fields) -> "RunSpec":
        return RunSpec(task_options=_frozen(task_options), hparams=_frozen(hparams), members=tuple(sorted(members)),
                       extra_train=_canonical(extra_train), external=_canonical(external), **fields)

    @property
    def hp(self) -> dict[str, Any]:
        return dict(self.hparams)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.task_options)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["task_options"] = dict(self.task_options)
        d["hparams"] = dict(self.hparams)
        d["members"] = list(self.members)
        d["extra_train"] = [json.loads(e) for e in self.extra_train]
        d["external"] = [json.loads(e) for e in self.external]
        return d

    @property
    def extensions(self) -> list[dict[str, Any]]:
        """The minority-class extensions: {dataset, path, options, classes} each."""
        return [json.loads(e) for e in self.extra_train]

    @property
    def externals(self) -> list[dict[str, Any]]:
        """The external test sets: {name, dataset, path, options} or {name, split: "official"} each."""
        return [json.loads(e) for e in self.external]

    def identity(self) -> dict[str, Any]:
        """What the hash covers (see the module docstring)."""
        from tasks.data import dataset_card
        from tasks.training import get_strategy
        from tasks.training.hparams import identity

        d = self.to_dict()
        card = dataset_card(self.task)
        # `allow_duplicates` only permits a release's own copies (BreastMNIST's train/test pair): what trains is the
        # same, so it is recorded with the run's params but is not identity.
        d["task_options"] = {k: v for k, v in d["task_options"].items()
                             if k not in card.settings and k not in RECORDED_ONLY
                             and not (k in card.neutral and card.neutral[k] == v)}
        d["hparams"] = identity(get_strategy(self.strategy).table, d["hparams"])
        if not d["members"]:  # added with ensembles: cells that are not ensembles hash as before
            del d["members"]
        if not d["extra_train"]:  # added with minority-class extension: cells without one hash as before
            del d["extra_train"]
        if not d["external"]:  # added with external validation: cells without an external set hash as before
            del d["external"]
        if not d["positive_class"]:  # added with target.positive_class
            del d["positive_class"]
        del d["variant"]  # a label of values already in hparams
        d["source"] = "+".join(sorted(SOURCE_IDENTITY.get(s, s) for s in self.source.split("+"))) \
            if "+" in self.source else SOURCE_IDENTITY.get(self.source, self.source)  # "a+b": a sources-ensemble
        if self.devices > 1:  # since issue 13 each device loads batch_size / devices rows (the global batch is kept)
            d["batch_per_device"] = "batch_size / devices"
        return d

    @cached_property
    def hash(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def is_count(self) -> bool:
        """True when `fraction` is a number of training images rather than a share."""
        return isinstance(self.fraction, int) and not isinstance(self.fraction, bool) and self.fraction > 1

    @property
    def fraction_label(self) -> str:
        """"n657" for a count of images, "frac0.25" for a share, "" for all rows."""
        if self.is_count:
            return f"n{self.fraction}"
        return "" if self.fraction == 1.0 else f"frac{self.fraction:g}"

    @property
    def row_strategy(self) -> str:
        """The strategy as the report's rows show it: `vlad[vlad_k=64]` for a cell of a grid, else the name."""
        return f"{self.strategy}[{self.variant}]" if self.variant else self.strategy

    @property
    def label(self) -> str:
        """Short human name for progress lines and the MLflow run name."""
        where = "official" if self.fold < 0 else f"fold{self.fold}"
        if self.stage == "pretrain":
            return f"pretrain {self.task}/{self.backbone} from {self.weights} ({where})"
        frac = f" {self.fraction_label}" if self.fraction_label else ""
        return f"{self.source}/{self.backbone}/{self.row_strategy} {where} seed{self.seed}{frac}"
