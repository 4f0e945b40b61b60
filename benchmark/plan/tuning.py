"""Which Optuna study a cell's tuned hyperparameters come from (suite key `tune.scope`).

    tune: {scope: nested}    # default: one study per (row, outer fold), tuned on that fold's training rows only
    tune: {scope: shared}    # one study per row on its first cell's fold; every fold's cell uses it (optimistic)

With k-fold, an outer fold is a (seed, fold) pair: each seed draws its own k-fold split
(`tasks.data.splits.assign_folds`), so fold 0 of seed 1 holds other test rows than fold 0 of seed 0.
A nested study trains its fold's training rows and scores the validation rows carved from them
(`tasks.data.splits.make_fold`), so no test row of that fold reaches it; its best values go to that
fold's cells only. A shared study tunes on one fold, so for the other folds the values were chosen
on data that includes their test rows: the report labels such rows optimistic (tag TUNE_SCOPE_TAG
on every tuned cell run). An official split has one test split, hence one study per row ("official").
"""

from __future__ import annotations

from tracking.naming import study_name

SCOPES = ("nested", "shared")  # the values of the suite key tune.scope
DEFAULT_SCOPE = "nested"


def effective_scope(scope: str, k: int) -> str:
    """What a cell's tuning really was: nested | shared | official (an official split: one study, one test split)."""
    if scope not in SCOPES:
        raise ValueError(f"tune.scope {scope!r} is not one of {', '.join(SCOPES)}.")
    return "official" if k == 0 else scope


def cell_study(suite: str, scope: str, spec) -> str:
    """The study whose best trial gives `spec` (a RunSpec, or any object with its row and fold fields) its values."""
    if effective_scope(scope, spec.folds) == "nested":
        return study_name(suite, spec.task, spec.backbone, spec.source, spec.strategy, fold=spec.fold, seed=spec.seed)
    return study_name(suite, spec.task, spec.backbone, spec.source, spec.strategy)


def scope_tags(suite, spec) -> dict[str, str]:
    """The tag a cell run of `suite` carries when its values come from a study (`hparams_from: optuna`); else none."""
    from tasks.training import get_strategy
    from tracking.naming import TUNE_SCOPE_TAG

    if suite.hparams_from != "optuna" or spec.stage != "finetune" or not get_strategy(spec.strategy).tunable:
        return {}
    return {TUNE_SCOPE_TAG: effective_scope(suite.tune_scope, spec.folds)}
