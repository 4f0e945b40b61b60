"""Transfer strategies: registered values of a suite's `strategy` axis.

A strategy declares the hyperparameters it owns (default and search space, like the shared table
in `tasks.training.hparams`) and which shared ones it reads, and is called with exactly those, so a
misspelt name is an error and a hyperparameter only one strategy reads is part of only its cells'
identity. Strategies that train are Lightning callbacks (schedules are callbacks, not `if epoch`).
Strategies that do not train with Lightning (frozen features + SVM, VLAD) give a `fit` callable
instead, which `tasks.training.fit.train_and_test` calls in place of Lightning's loop; a strategy
that cannot apply to a backbone or task says so in `applies`, checked when a suite is expanded
and again before any work in `train_and_test`.

A new strategy is one module in this folder with a `@register_strategy(...)` function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lightning.pytorch.callbacks import Callback

from backbones import Registry, import_submodules
from tasks.training.hparams import SHARED, HParam
from tasks.training.hparams import resolve as resolve_table


class UnknownStrategyError(ValueError):
    """A strategy name that is not registered."""


class StrategyNotApplicable(ValueError):
    """A strategy that cannot run on this backbone or task; the message names the valid alternatives."""


@dataclass(frozen=True)
class Strategy:
    """A registered strategy."""

    name: str  # the suite's `strategies:` value
    summary: str  # one line for `medtl list` and the README: what it does, from which paper
    callbacks: Callable[..., list[Callback]]  # (**own hyperparameters) -> Lightning callbacks
    params: Mapping[str, HParam] = field(default_factory=dict)  # hyperparameters it owns
    shared: tuple[str, ...] | None = None  # entries of the shared table it reads; None: all of them
    # Set: the strategy does not train with Lightning; train_and_test calls it instead (see tasks.training.fit).
    fit: Callable[..., Any] | None = None
    # (backbone name or Backbone, hyperparameters, image_size=, kind=) -> None, or StrategyNotApplicable.
    applies: Callable[..., None] | None = None
    combines: str = ""  # ensembles: the axis whose finished cells it averages (seeds, sources, backbones)

    @property
    def table(self) -> dict[str, HParam]:
        """Every hyperparameter a cell with this strategy uses."""
        names = SHARED if self.shared is None else self.shared
        return {**{n: SHARED[n] for n in names}, **self.params}

    def resolve(self, *overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """This strategy's hyperparameters: defaults <- each override (names it does not use are dropped)."""
        table = self.table
        return resolve_table(table, *({k: v for k, v in (o or {}).items() if k in table} for o in overrides))

    def build_callbacks(self, hparams: Mapping[str, Any]) -> list[Callback]:
        return self.callbacks(**{k: hparams[k] for k in self.params})

    def check(self, backbone, hparams: Mapping[str, Any], *, image_size: int, kind: str | None = None) -> None:
        """Raise StrategyNotApplicable (naming the valid alternatives) if this strategy cannot run on
        `backbone` (a registered name or a built Backbone) with `hparams` at `image_size` for a task of `kind`."""
        if self.applies is not None:
            self.applies(backbone, hparams, image_size=image_size, kind=kind)


STRATEGIES: Registry[Strategy] = Registry("strategy", UnknownStrategyError)


def register_strategy(name: str, *, summary: str, params: Mapping[str, HParam] | None = None,
                      shared: tuple[str, ...] | None = None, fit: Callable[..., Any] | None = None,
                      applies: Callable[..., None] | None = None, combines: str = ""):
    def decorate(fn: Callable[..., list[Callback]]):
        STRATEGIES.add(name, Strategy(name, summary, fn, dict(params or {}), shared, fit, applies, combines))
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
