"""RunSpec: everything that defines one cell. The hash of its sorted JSON is the cell's identity."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

STAGES = ("pretrain", "finetune")


def _frozen(mapping: dict | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((mapping or {}).items()))


@dataclass(frozen=True)
class RunSpec:
    """One cell of a suite. Fields that change results are here; paths and servers are not."""

    stage: str  # "pretrain" (train on a source, export the backbone) or "finetune" (on the target)
    task: str  # dataset registry name, e.g. "gen-target", "medmnist"
    task_options: tuple[tuple[str, Any], ...]  # adapter options (flag, generator seed, parts...)
    data_path: str  # path under --data-root ("" for generated data); relative so hashes travel
    fold: int  # test fold, or -1 for the dataset's official test split
    folds: int  # k of k-fold (0 with an official split)
    seed: int  # seeds Lightning, splits' validation carve-out and subsets
    backbone: str  # backbones registry name
    weights: str  # scratch | imagenet | file:<path> | run:<id> | cell:<hash of a pretrain cell>
    source: str  # what the weights were learnt on, for the leaderboard: none, imagenet, gen-general...
    strategy: str  # full | linear | layerwise
    hparams: tuple[tuple[str, Any], ...] = field(default=())  # resolved hyperparameters, sorted
    image_size: int = 224  # side of the square network input
    fraction: float = 1.0  # share of the training rows kept (data-efficiency curves)
    precision: str = "32-true"  # Lightning precision flag
    devices: int = 1  # accelerators per cell (DDP when > 1)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"Unknown stage {self.stage!r}. Valid stages: {', '.join(STAGES)}.")

    @staticmethod
    def build(*, task_options: dict | None = None, hparams: dict | None = None, **fields) -> "RunSpec":
        return RunSpec(task_options=_frozen(task_options), hparams=_frozen(hparams), **fields)

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
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """Short human name for progress lines and the MLflow run name."""
        where = "official" if self.fold < 0 else f"fold{self.fold}"
        if self.stage == "pretrain":
            return f"pretrain {self.task}/{self.backbone} from {self.weights}"
        frac = "" if self.fraction == 1.0 else f" frac{self.fraction:g}"
        return f"{self.source}/{self.backbone}/{self.strategy} {where} seed{self.seed}{frac}"
