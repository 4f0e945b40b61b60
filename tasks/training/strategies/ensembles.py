"""Ensembles: average the predicted probabilities of finished cells that share a test fold.

  ensemble-seeds      Hicks et al.'s "3-averaged" models: the k seeds of one (source, backbone,
                      strategy) on one fold
  ensemble-sources    the survey's multi-source ensembles: every source of the suite, per
                      (backbone, strategy, fold, seed)
  ensemble-backbones  every backbone of the suite, per (source, strategy, fold, seed)
  ensemble-folds      Hicks et al.'s "3-averaged" run: the k fold models of one (source, backbone,
                      strategy, seed), averaged on the target's external test sets only (each fold
                      model was tested on other in-domain rows, so there is no shared in-domain test)

An ensemble trains nothing: the suite adds it after its members (cells of strategy `ensemble_of`,
`full` by default), and the benchmark layer scores the averaged probabilities as a cell of its
own (`benchmark/plan/ensembles.py`), its inference cost the sum of its members'.
"""

from __future__ import annotations

from tasks.training.hparams import HParam
from tasks.training.strategies import CombiningStrategy, StrategyNotApplicable, add_strategy

AXES = ("seeds", "sources", "backbones", "folds")
SUMMARIES = {
    "folds": "average the predicted probabilities of the k fold models of each row and seed (members: cells of "
             "strategy `ensemble_of`) on the target's external test sets (Hicks et al.'s 3-averaged run)",
}


def _params() -> dict[str, HParam]:
    return {"ensemble_of": HParam("full", str, "strategy of the member cells the ensemble averages")}


def _trains_nothing(backbone, hparams, *, image_size: int, kind: str | None = None) -> None:
    raise StrategyNotApplicable("An ensemble trains no model of its own: list it in a suite's `strategies` beside the "
                                "strategy of its members (hparams.ensemble_of), and the runner scores their predictions.")


for _axis in AXES:
    add_strategy(CombiningStrategy(
        name=f"ensemble-{_axis}",
        summary=SUMMARIES.get(_axis, f"average the predicted probabilities of the suite's {_axis} (members: cells of "
                              "strategy `ensemble_of`) on each shared test fold"),
        params=_params(), shared=(), axis=_axis, applies=_trains_nothing))
