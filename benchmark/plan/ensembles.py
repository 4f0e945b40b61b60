"""Ensemble cells in a plan: expanded after their members (scored by `benchmark.cell.ensemble`).

    strategies: [full, ensemble-seeds]      # in a suite: Hicks et al.'s 3-averaged models
    medtl benchmark SUITE                   # the runner scores each ensemble after its members

An ensemble cell is a RunSpec whose `members` are the hashes of the cells it averages (identity:
change a member and the ensemble is a new cell). Scoring reads each member's
`test/predictions.csv` from MLflow, checks that they predict the same test rows in the same
order with the same targets, averages the class probabilities, and scores them with the metrics
every trained cell uses. Cost: inference time per image is the sum of the members' (FPS combine
as 1 / sum(1 / fps)), training time the sum of their fit times.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace


from benchmark.plan.spec import RunSpec
from tasks.training import get_strategy

# axis -> the spec fields that identify one ensemble (everything but the axis it averages over);
# `variant` keeps the rows of a suite's `grid` apart (an ensemble never mixes two grid values).
GROUP_BY = {
    "seeds": ("source", "backbone", "strategy", "variant", "fold", "fraction"),
    "sources": ("backbone", "strategy", "variant", "fold", "seed", "fraction"),
    "backbones": ("source", "strategy", "variant", "fold", "seed", "fraction"),
    # The k fold models of one row and seed, averaged on the external test sets (Hicks et al.'s 3-averaged run).
    "folds": ("source", "backbone", "strategy", "variant", "seed", "fraction"),
}


class EnsembleError(ValueError):
    """An ensemble that cannot be formed or scored; the message says which cells and why."""


def expand_ensembles(cells: list[RunSpec], strategies: list[str], suite_hparams: dict | None) -> list[RunSpec]:
    """One ensemble cell per group of `cells` that differ only along the ensemble's axis."""
    ensembles: list[RunSpec] = []
    for name in strategies:
        strategy = get_strategy(name)
        if not strategy.combines:
            continue
        hparams = strategy.resolve(suite_hparams)
        base = hparams["ensemble_of"]
        if base not in strategies or get_strategy(base).combines:
            raise EnsembleError(f"strategy {name!r} averages cells of strategy {base!r} (hparams.ensemble_of), which the "
                                f"suite does not train; add {base!r} to 'strategies' or set ensemble_of to one of "
                                f"{', '.join(s for s in strategies if not get_strategy(s).combines)}.")
        if strategy.combines == "seeds" and any(c.fold >= 0 for c in cells):
            # Each seed draws its own k-fold partition (repeated k-fold), so fold 0 of two seeds
            # holds different test rows: there is no shared test fold to average on.
            raise EnsembleError(f"strategy {name!r} needs the seeds to share their test rows, but with k-fold every seed "
                                "draws its own folds; use `folds: official` (a fixed test split), or ensemble-sources / "
                                "ensemble-backbones, whose members share the seed and so the folds.")
        if strategy.combines == "folds":
            _check_fold_ensemble(name, [c for c in cells if c.strategy == base])
        groups: dict[tuple, list[RunSpec]] = defaultdict(list)
        for cell in cells:
            if cell.strategy == base:
                groups[tuple(getattr(cell, f) for f in GROUP_BY[strategy.combines])].append(cell)
        for members in groups.values():
            if len(members) < 2:
                raise EnsembleError(f"strategy {name!r} needs at least 2 {strategy.combines} to average; the suite has "
                                    f"one ({members[0].label}). Add {strategy.combines} or drop {name!r}.")
            ensembles.append(_ensemble_cell(members, name, strategy.combines, hparams))
    return ensembles


def _check_fold_ensemble(name: str, members: list[RunSpec]) -> None:
    """The fold models have no shared in-domain test rows; they can only be averaged on an external test set."""
    if any(not c.external for c in members):
        raise EnsembleError(f"strategy {name!r} averages the k fold models on an external test set, and the suite has "
                            "none. Fix: add target.external: [{name: site-b, dataset: ..., path: ...}] (another site's "
                            "data), or [{name: official-test, split: official}] (the target's official test split, with "
                            f"the folds on its development rows), or drop {name!r}.")
    if any(c.fold < 0 for c in members):
        raise EnsembleError(f"strategy {name!r} averages the k fold models, but the suite has `folds: official` (one "
                            "model per seed). Fix: set folds to a number >= 2, or use ensemble-seeds.")


def _ensemble_cell(members: list[RunSpec], name: str, axis: str, hparams: dict) -> RunSpec:
    first = members[0]
    joined = {"seeds": {"seed": -1}, "sources": {"source": "+".join(sorted({m.source for m in members}))},
              "backbones": {"backbone": "+".join(sorted({m.backbone for m in members}))},
              "folds": {"fold": -1}}[axis]  # tested on the external sets only
    return replace(first, strategy=name, hparams=tuple(sorted(hparams.items())), weights="ensemble",
                   members=tuple(sorted(m.hash for m in members)), **joined)
