"""The report's Protocol section: how the numbers were made, per strategy, and which rows were tuned with Optuna.

    medtl report benchmark/suites/smoke.yaml     # the first section of report.html / report.md

Settings are stated per strategy: an epoch-selection rule means something for a strategy with a
training loop (full, linear probe, layer-wise unfreezing) and nothing for svm or vlad, which fit
once on frozen features; one line mixing them ("`hparams.select` = last, mcc") reads as if both
applied to every row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.report import statistics as st
from benchmark.report.comparisons import primary_test, row_label
from benchmark.report.leaderboard import CI_NOTE, trains
from benchmark.report.results import SuiteResults, registered, source_name
from tracking.naming import BACKBONE_TAG, BEST_TRIAL_TAG, FRACTION_TAG, SOURCE_TAG, STRATEGY_TAG, STUDY_TAG, tuning_experiment

# Below this many complete trials Optuna's parameter importances (fANOVA on the trials) rank noise: say so.
MIN_TRIALS_FOR_IMPORTANCES = 10
SELECT_MEANING = {"last": "the final epoch, no selection", "mcc": "the epoch with the best validation MCC",
                  "auc": "the epoch with the best validation AUC",
                  "loss": "the epoch with the lowest validation loss"}


def _combines(strategy: str) -> bool:
    from tasks.training.strategies import get_strategy

    try:
        return bool(get_strategy(registered(strategy)).combines)
    except Exception:  # noqa: BLE001 - a name this version does not register: not an ensemble it knows of
        return False


def selection_text(cells: pd.DataFrame) -> str:
    """Model selection, one clause per strategy; rows listed where a strategy's rows differ (e.g. a tuned row)."""
    if not len(cells):
        return "Model selection: no finished cells."
    clauses = []
    for strategy, group in cells.groupby("strategy", sort=False):
        if not trains(strategy, group["epochs_trained"].max()):
            clauses.append(f"{strategy}: " + ("averages its members' predictions, each member selected by its own strategy's rule"
                                               if _combines(strategy) else
                                               "no training loop (fitted once on frozen features), so no epoch to select"))
            continue
        values = sorted(set(group["select"]))
        if len(values) == 1:
            clauses.append(f"{strategy}: `hparams.select` = {values[0]} ({SELECT_MEANING.get(values[0], 'see tasks/training/hparams.py')})")
            continue
        per_value = []
        for value in values:
            rows = group[group["select"] == value].drop_duplicates(["source", "backbone", "fraction"]).to_dict("records")
            per_value.append(f"{value} for {', '.join(row_label(r) for r in rows)}")
        clauses.append(f"{strategy}: `hparams.select` = " + "; ".join(per_value))
    return ("Model selection, per strategy (on the validation rows only; the test fold never chose anything): "
            + "; ".join(clauses) + ".")


def protocol_text(results: SuiteResults) -> list[str]:
    """The Protocol section's paragraphs."""
    cells = results.cells
    if not len(cells):
        return [f"Suite {results.name}: no fine-tuning cell has finished yet, so nothing below is a result; "
                f"{len(results.missing)} cell(s) are listed under Missing cells with their state.", tuning_text(results)]
    folds = sorted(set(cells["folds"])) if len(cells) else []
    seeds = sorted(set(cells["seed"])) if len(cells) else []
    split = "the official train/test split" if folds == [0] else f"{', '.join(map(str, folds))}-fold stratified cross-validation"
    fractions = sorted(set(cells["fraction"])) if len(cells) else []
    return [
        standin_text(results) +
        f"Suite {results.name}: {split} x {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); training fraction(s) "
        f"{', '.join(f'{f:g}' for f in fractions)}. Every number is on held-out test rows the model never trained or was selected on.",
        selection_text(cells),
        f"Intervals: {CI_NOTE}.",
        tuning_text(results),
        f"Paired tests: the primary test (the one behind the verdicts): {primary_test(cells)}; Holm's correction runs over all comparisons of a "
        f"family (sources, strategies) for each test; alpha = {st.ALPHA}. {len(cells)} finished cells, "
        f"{int((results.missing['stage'] != 'pretrain').sum()) if len(results.missing) else 0} fine-tuning cells missing.",
    ]


def standin_text(results: SuiteResults) -> str:
    """"STAND-IN: ..." when the suite ran with `--stand-in` (generated images, no ImageNet weights), else ""."""
    from tracking.naming import STANDIN_TAG

    try:
        note = results.client.get_experiment(results.experiment_id).tags.get(STANDIN_TAG) if results.client else None
    except Exception:  # noqa: BLE001 - a report without its store's experiment says nothing of stand-ins
        note = None
    return (f"STAND-IN RUN (medtl benchmark SUITE --stand-in): generated images with the real classes, not a result; "
            f"{note}. " if note else "")


def importance_caveat(tags: dict, run_id: str) -> str:
    """What the study's parameter-importance plot can be trusted for, from its number of complete trials."""
    complete = int(tags.get("medtl.trials.COMPLETE", "0") or 0)
    not_drawn = tags.get("medtl.plot.param_importances") or tags.get("medtl.plots")
    if not_drawn:
        return f"no parameter importances ({not_drawn})"
    if complete < MIN_TRIALS_FOR_IMPORTANCES:
        return (f"parameter importances (optuna/param_importances.png of study run {run_id}) rest on only {complete} complete "
                f"trial(s), fewer than {MIN_TRIALS_FOR_IMPORTANCES}: they rank noise, not parameters; do not read them as findings")
    return f"parameter importances from {complete} complete trials in optuna/param_importances.png of study run {run_id}"


def tuning_text(results: SuiteResults) -> str:
    """Which rows took their hyperparameters from an Optuna study (benchmark/tune/study.py), with how many trials, on which
    storage: read from the studies' parent runs (experiment `medtl-<suite>-tuning`) and checked against the cells' params."""
    from tracking.runs import search_runs

    client = results.client
    experiment = client.get_experiment_by_name(tuning_experiment(results.name)) if client is not None else None
    studies = search_runs(client, experiment.experiment_id, "tags.`medtl.stage` = 'study'") if experiment else []
    if not studies:
        return "Tuning: none; every row used the suite's fixed hyperparameters (no Optuna study of this suite in this store)."
    params = {r.info.run_id: r.data.params for r in search_runs(client, results.experiment_id, "tags.`medtl.stage` = 'finetune'")}
    cells, lines = results.cells, []
    for study in sorted(studies, key=lambda r: r.data.tags.get(STUDY_TAG, "")):
        tags = study.data.tags
        best = {k[len("best."):]: v for k, v in tags.items() if k.startswith("best.")}
        if SOURCE_TAG not in tags:  # a study tuned before its runs said which row they tune
            lines.append(f"study {tags.get('medtl.study', '?')}: {tags.get('medtl.trials', '?')} trials (its row is not recorded)")
            continue
        row = {"source": source_name(tags[SOURCE_TAG]), "backbone": tags[BACKBONE_TAG], "strategy": tags[STRATEGY_TAG],
               "fraction": float(tags.get(FRACTION_TAG, 1.0))}
        mine = cells[(cells["source"] == row["source"]) & (cells["backbone"] == row["backbone"])
                     & (cells["strategy"] == row["strategy"]) & np.isclose(cells["fraction"], row["fraction"])] if len(cells) else cells
        using = sum(bool(best) and all(params.get(r, {}).get(f"hparams.{k}") == v for k, v in best.items()) for r in mine["run_id"])
        counts = ", ".join(f"{tags.get(f'medtl.trials.{state}', '0')} {word}"
                           for state, word in (("COMPLETE", "complete"), ("PRUNED", "pruned"), ("FAIL", "failed")))
        use = (f"best trial {tags['medtl.best_trial']} (val/mcc {tags.get('medtl.best_value', '?')}), whose values {using} of its "
               f"{len(mine)} finished cells use" if BEST_TRIAL_TAG in tags else "no complete trial, its cells use the suite's values")
        lines.append(f"{row_label(row)}: {tags.get('medtl.trials', '?')} trials ({counts}; budget {tags.get('medtl.tune_budget', '?')}) "
                     f"on storage {tags.get('medtl.storage', '?')}, trained on fold {tags.get('medtl.fold', '?')}'s training rows and "
                     f"scored on its validation rows; {use}; {importance_caveat(tags, study.info.run_id)}")
    return ("Tuning (Optuna, benchmark/tune/study.py; the test fold never entered tuning: a trial is scored by its best "
            "validation MCC and ends before any test pass): " + "; ".join(lines) + ". Rows not listed used the suite's fixed "
            "hyperparameters.")
