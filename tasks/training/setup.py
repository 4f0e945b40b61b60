"""What a fit trains (TrainPlan) and where it runs (Machine): the two objects `train_and_test` receives.

    >>> train_and_test(task, backbone, TrainPlan(fold=0, k=3, seed=0, hp=hp, size=32), Machine(accelerator="cpu"))

Two frozen objects instead of a long keyword list, so a caller cannot silently drop a setting: the
benchmark layer builds both from a cell's spec and its suite (`benchmark.cell.route.machine_for`), and a
tuning trial gets them from the same function as the cells of its row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainPlan:
    """What to train: one fold of a task, one strategy and its resolved hyperparameters."""

    fold: int  # test fold, or -1 for the task's official test split
    k: int  # k of k-fold (0 with an official split)
    seed: int  # seeds Lightning, the validation carve-out, subsets, augmentations
    hp: Mapping[str, Any] = field(default_factory=dict)  # the strategy's resolved hyperparameters (Strategy.resolve)
    size: int = 224  # side of the square network input
    strategy: Any = "full"  # a registered strategy name, or a Strategy
    fraction: float = 1.0  # share (<= 1) or count (> 1) of the training rows kept


@dataclass(frozen=True)
class Machine:
    """Where and how a fit runs: settings that change speed and float rounding, never what is trained."""

    accelerator: str = "cpu"  # Lightning accelerator flag (cpu, gpu, auto, ...)
    devices: int | str = 1  # accelerators per fit: DDP over N processes when > 1 (tasks.training.distributed)
    precision: str = "32-true"  # Lightning precision flag; bf16 on an emulating CPU runs as asked, with a warning
    num_workers: int | str = 0  # DataLoader worker processes, or auto (tasks.data.device_pipeline)
    memory_format: str = "auto"  # auto | channels_last | contiguous (tasks.training.speed)
    pipeline: str = "auto"  # auto | cpu | device: how training batches are made (tasks.data.device_pipeline)
    compile: bool = False  # torch.compile the training steps (tasks.training.speed.Compile)
    progress_position: int = 0  # where Lightning's bars go under a suite's own bar
    feature_cache: Path | None = None  # frozen-feature strategies' cache (default tasks.training.features)
    # A folder for epoch-end checkpoints a killed fit resumes from (None: no resume checkpoints). A fit with one
    # resumes from `<resume_dir>/last.ckpt` when present (tasks.training.resume); the caller removes the folder once
    # the cell is recorded (benchmark.cell.resume).
    resume_dir: Path | None = None
