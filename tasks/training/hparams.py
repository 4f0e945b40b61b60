"""The one table of hyperparameters: default, valid values and Optuna search space per entry.

DomainBed style: `SHARED` holds what every training cell reads (optimiser, budget, loss, data);
a strategy declares its own entries where it is registered (`tasks.training.strategies`), and a
cell resolves exactly the entries it uses: the strategy's `shared` names plus its own. Suites and
Optuna read the same entries, so a value a suite may set is a value a study may search.

Cell identity (`benchmark.plan.spec`) covers every resolved value, except an entry at its `neutral`
value: an entry added later, whose neutral value reproduces the behaviour from before it
existed, leaves the identity of existing cells unchanged; changing its default changes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tasks.training.schedules import OPTIMIZERS, SCHEDULES

UNSET = object()  # `neutral` of an entry that was there from the start: always part of identity

Space = Callable[[Any, str], Any]  # (optuna.Trial, name) -> a suggested value


@dataclass(frozen=True)
class HParam:
    """One hyperparameter."""

    default: Any  # what a cell uses unless a suite, a study or a pretraining block says otherwise
    type: type  # int, float, str or bool; suite values are checked against it before any cell runs
    help: str  # one line for error messages and the README
    low: float | None = None  # smallest valid value (numbers)
    high: float | None = None  # largest valid value (numbers)
    choices: tuple = ()  # the valid values (strings)
    space: Space | None = None  # Optuna search space; None: not tuned (a budget or a setting)
    neutral: Any = UNSET  # see the module docstring

    def check(self, name: str, value: Any) -> Any:
        """`value` if valid for this entry, else ValueError saying what is valid."""
        if self.type is float and not isinstance(value, bool):
            # YAML 1.1 reads `1e-3` (no dot) as a string; a number written that way is still a number.
            try:
                value = float(value) if isinstance(value, (int, str)) else value
            except ValueError:
                pass
        ok_type = isinstance(value, self.type) and not (self.type is not bool and isinstance(value, bool))
        if not ok_type:
            raise ValueError(f"hyperparameter {name!r} must be {self.type.__name__} ({self.help}), got {value!r}")
        if self.choices and value not in self.choices:
            raise ValueError(f"hyperparameter {name!r} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            bounds = f">= {self.low}" if self.high is None else f"between {self.low} and {self.high}"
            raise ValueError(f"hyperparameter {name!r} must be {bounds} ({self.help}), got {value!r}")
        return value


def _log_float(low: float, high: float) -> Space:
    return lambda trial, name: trial.suggest_float(name, low, high, log=True)


def _pick(*values) -> Space:
    return lambda trial, name: trial.suggest_categorical(name, list(values))


SHARED: dict[str, HParam] = {
    "epochs": HParam(15, int, "training epochs; a budget, set by suites, not tuned", low=1),
    "batch_size": HParam(32, int, "images per training batch", low=2, space=_pick(16, 32, 64)),
    "lr": HParam(1e-3, float, "learning rate of the head (and the backbone, for full fine-tuning)", low=1e-12,
                 space=_log_float(1e-5, 1e-2)),
    "weight_decay": HParam(0.0, float, "decoupled or L2 weight decay of the optimiser", low=0.0, space=_log_float(1e-6, 1e-2)),
    "optimizer": HParam("adam", str, "optimiser", choices=OPTIMIZERS, space=_pick("adam", "adamw", "sgd")),
    # Added with the training protocol (spec format 2): neutral = what cells did before them; the
    # defaults are the protocol that reaches MedMNIST's published baselines (issue 7): step decay,
    # the epoch with the best validation MCC (the Medico task's ranking metric), 15 epochs.
    "schedule": HParam("step", str, "learning-rate schedule (tasks/training/schedules.py)", choices=SCHEDULES,
                       space=_pick(*SCHEDULES), neutral="none"),
    "warmup_epochs": HParam(0, int, "linear warm-up epochs of the cosine schedule", low=0, neutral=0),
    "select": HParam("mcc", str, "validation metric that picks the epoch tested (last: no selection)",
                     choices=("mcc", "auc", "loss", "last"), neutral="last"),
    "patience": HParam(0, int, "early stopping: epochs without a better selection metric (0: off)", low=0, neutral=0),
    "head_l1": HParam(0.0, float, "L1 penalty on the new head's weights (Hicks et al.)", low=0.0, space=_log_float(1e-7, 1e-3)),
    "head_l2": HParam(0.0, float, "L2 penalty on the new head's weights (Hicks et al.)", low=0.0, space=_log_float(1e-7, 1e-3)),
    "dropout": HParam(0.0, float, "dropout before the new head", low=0.0, high=0.9,
                      space=lambda trial, name: trial.suggest_float(name, 0.0, 0.5)),
    "class_weighted": HParam(True, bool, "class-weighted loss, weights from the training fold", space=_pick(True, False)),
    "augment": HParam("light", str, "augmentation level", choices=("none", "light", "standard"),
                      space=_pick("none", "light", "standard")),
}


def resolve(table: Mapping[str, HParam], *overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults of `table` updated by each mapping in turn, every value checked against its entry."""
    resolved = {name: entry.default for name, entry in table.items()}
    for override in overrides:
        for name, value in (override or {}).items():
            if name not in table:
                raise ValueError(f"Unknown hyperparameter {name!r}. Valid names: {', '.join(sorted(table))}.")
            resolved[name] = table[name].check(name, value)
    return resolved


def identity(table: Mapping[str, HParam], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` without the entries at their neutral value (see the module docstring)."""
    return {k: v for k, v in values.items() if not (k in table and table[k].neutral is not UNSET and v == table[k].neutral)}
