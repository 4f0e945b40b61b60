"""The one table of hyperparameters: default and Optuna search space per entry (DomainBed style).

Resolution order for a cell: these defaults <- the suite's `hparams` (and a stage's own block).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# name -> (default, search space as a function of an optuna.Trial)
HPARAMS: dict[str, tuple[Any, Callable[[Any], Any] | None]] = {
    "epochs": (5, None),  # a budget, not tuned: suites set it
    "batch_size": (32, lambda t: t.suggest_categorical("batch_size", [16, 32, 64])),
    "lr": (1e-3, lambda t: t.suggest_float("lr", 1e-5, 1e-2, log=True)),
    "weight_decay": (0.0, lambda t: t.suggest_float("weight_decay", 1e-6, 1e-2, log=True)),
    "optimizer": ("adam", lambda t: t.suggest_categorical("optimizer", ["adam", "adamw", "sgd"])),
    "head_l1": (0.0, lambda t: t.suggest_float("head_l1", 1e-7, 1e-3, log=True)),
    "head_l2": (0.0, lambda t: t.suggest_float("head_l2", 1e-7, 1e-3, log=True)),
    "dropout": (0.0, lambda t: t.suggest_float("dropout", 0.0, 0.5)),
    "class_weighted": (True, lambda t: t.suggest_categorical("class_weighted", [True, False])),
    "augment": ("light", lambda t: t.suggest_categorical("augment", ["none", "light", "standard"])),
    "num_workers": (0, None),  # a machine setting: 0 is fastest for small in-memory sets
    "unfreeze_every": (1, lambda t: t.suggest_int("unfreeze_every", 1, 3)),
    "unfreeze_lr_factor": (0.1, lambda t: t.suggest_float("unfreeze_lr_factor", 0.01, 1.0, log=True)),
}


def defaults() -> dict[str, Any]:
    return {name: default for name, (default, _) in HPARAMS.items()}


def resolve(*overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults updated by each mapping in turn; unknown names are an error, not a silent no-op."""
    resolved = defaults()
    for override in overrides:
        for name, value in (override or {}).items():
            if name not in HPARAMS:
                raise ValueError(f"Unknown hyperparameter {name!r}. Valid names: {', '.join(sorted(HPARAMS))}.")
            resolved[name] = value
    return resolved
