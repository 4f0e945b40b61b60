"""Transfer strategies: registered values of a suite's `strategy` axis.

A strategy declares the hyperparameters it owns (default and search space, like the shared table
in `tasks.training.hparams`) and which shared ones it reads, and is called with exactly those, so a
misspelt name is an error and a hyperparameter only one strategy reads is part of only its cells'
identity. Three kinds, each a type: a TrainedStrategy is a set of Lightning callbacks (schedules are callbacks,
not `if epoch`); a FeatureStrategy (frozen features + SVM, VLAD, probes) gives a `fit` callable, which
`tasks.training.fit.train_and_test` calls in place of Lightning's loop; a CombiningStrategy (ensembles)
trains nothing and is scored by the benchmark layer from its members' predictions. A strategy
that cannot apply to a backbone or task says so in `applies`, checked when a suite is expanded
and again before any work in `train_and_test`.

A new strategy is one module in this folder: a `@register_strategy(...)` callbacks function, or an
`add_strategy(FeatureStrategy(...))` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lightning.pytorch.callbacks import Callback

from backbones import Registry, import_submodules
from tasks.training.hparams import SHARED, HParam
from tasks.training.hparams import resolve as resolve_table


class UnknownStrategyError(ValueError):
    """A strategy name that is not registered."""


class StrategyNotApplicable(ValueError):
    """A strategy that cannot run on this backbone or task; the message names the valid alternatives."""


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """What every registered strategy has; its kind is its type (TrainedStrategy, FeatureStrategy, CombiningStrategy)."""

    name: str  # the suite's `strategies:` value
    summary: str  # one line for `medtl list` and the README: what it does, from which paper
    params: Mapping[str, HParam] = field(default_factory=dict)  # hyperparameters it owns
    shared: tuple[str, ...] | None = None  # entries of the shared table it reads; None: all of them
    # (backbone name or Backbone, hyperparameters, image_size=, kind=) -> None, or StrategyNotApplicable.
    applies: Callable[..., None] | None = None

    kind: ClassVar[str] = ""  # "trained" | "features" | "combining", for messages and `medtl list`
    trains: ClassVar[bool] = False  # runs Lightning's loop (epochs, checkpoints, DDP, the training pipeline)
    tunable: ClassVar[bool] = False  # an Optuna study can tune it (the pruner reads its per-epoch validation score)
    combines: ClassVar[str] = ""  # ensembles: the axis whose finished cells it averages (seeds, sources, backbones)

    @property
    def table(self) -> dict[str, HParam]:
        """Every hyperparameter a cell with this strategy uses."""
        names = SHARED if self.shared is None else self.shared
        return {**{n: SHARED[n] for n in names}, **self.params}

    def resolve(self, *overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """This strategy's hyperparameters: defaults <- each override (names it does not use are dropped)."""
        table = self.table
        return resolve_table(table, *({k: v for k, v in (o or {}).items() if k in table} for o in overrides))

    def search_space(self) -> dict[str, Any]:
        """name -> Optuna space of every tuned entry of its table (shared and its own)."""
        return {name: entry.space for name, entry in self.table.items() if entry.space is not None}

    def check(self, backbone, hparams: Mapping[str, Any], *, image_size: int, kind: str | None = None) -> None:
        """Raise StrategyNotApplicable (naming the valid alternatives) if this strategy cannot run on
        `backbone` (a registered name or a built Backbone) with `hparams` at `image_size` for a task of `kind`."""
        if self.applies is not None:
            self.applies(backbone, hparams, image_size=image_size, kind=kind)


@dataclass(frozen=True, kw_only=True)
class TrainedStrategy(Strategy):
    """Trained through Lightning's loop; its schedule is a set of callbacks (full, linear, layer-wise)."""

    callbacks: Callable[..., list[Callback]]  # (**own hyperparameters) -> Lightning callbacks

    kind: ClassVar[str] = "trained"
    trains: ClassVar[bool] = True
    tunable: ClassVar[bool] = True

    def build_callbacks(self, hparams: Mapping[str, Any]) -> list[Callback]:
        return self.callbacks(**{k: hparams[k] for k in self.params})


@dataclass(frozen=True, kw_only=True)
class FeatureStrategy(Strategy):
    """Fitted on frozen (cached) features instead of Lightning's loop: svm, vlad, probes."""

    # (task, backbone, fold, hparams, size=, seed=, accelerator=, num_workers=, cache_dir=) -> the fit's outcome
    # (tasks.training.fit.train_and_test calls it in place of Lightning's loop).
    fit: Callable[..., Any]

    kind: ClassVar[str] = "features"


@dataclass(frozen=True, kw_only=True)
class CombiningStrategy(Strategy):
    """Trains nothing: combines the predictions of other finished cells (ensembles, scored by the benchmark layer)."""

    axis: str  # the axis whose finished cells it averages: seeds, sources, backbones

    kind: ClassVar[str] = "combining"

    @property
    def combines(self) -> str:  # type: ignore[override]
        return self.axis


STRATEGIES: Registry[Strategy] = Registry("strategy", UnknownStrategyError)


def add_strategy(strategy: Strategy) -> Strategy:
    """Register a strategy object (feature and combining strategies have no callbacks to decorate)."""
    STRATEGIES.add(strategy.name, strategy)
    return strategy


def register_strategy(name: str, *, summary: str, params: Mapping[str, HParam] | None = None,
                      shared: tuple[str, ...] | None = None, fit: Callable[..., Any] | None = None,
                      applies: Callable[..., None] | None = None, combines: str = ""):
    """Decorate the callbacks function of a trained strategy. `fit=` or `combines=` register a feature or a
    combining strategy instead (the decorated function is then unused; `add_strategy` needs none)."""
    common = dict(name=name, summary=summary, params=dict(params or {}), shared=shared, applies=applies)

    def decorate(fn: Callable[..., list[Callback]]):
        if fit is not None:
            add_strategy(FeatureStrategy(fit=fit, **common))
        elif combines:
            add_strategy(CombiningStrategy(axis=combines, **common))
        else:
            add_strategy(TrainedStrategy(callbacks=fn, **common))
        return fn

    return decorate


def list_strategies() -> list[str]:
    return STRATEGIES.names()


def get_strategy(name: str) -> Strategy:
    return STRATEGIES.get(name)


def all_hparams() -> dict[str, HParam]:
    """The shared table plus every strategy's own entries (what a suite's `hparams` may name)."""
    table = dict(SHARED)
    for _, strategy in STRATEGIES.items():
        table.update(strategy.params)
    return table


import_submodules(__name__)
