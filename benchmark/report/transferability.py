"""Transferability in the report: did LogME / H-score, computed before any fine-tuning, predict the sources' order?

    medtl report SUITE      # section "Transferability" (the suite run logged the scores: benchmark/cell/transferability.py)

The scores are read from the newest parent run of the suite that logged transferability/transferability.csv.
They are compared with the fine-tuned rows inside each setting where sources compete (a backbone, strategy
and fraction: the "which source wins" groups of benchmark/report/comparisons.py):
  Kendall tau      between each source's LogME (and H-score) and its row's mean MCC (scipy's tau-b; undefined
                   with fewer than 2 sources or constant scores)
  best tier        the best row by mean MCC and every row not significantly worse than it by the report's primary
                   paired test (Holm-adjusted); `top source in best tier` says whether the source LogME ranked
                   first is among them, i.e. whether choosing by LogME alone would have lost nothing detectable
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.report.comparisons import row_label
from benchmark.report.render import Section
from benchmark.report.results import SuiteResults, source_name
from tracking.naming import STAGE_TAG, SUITE_TAG, TRANSFERABILITY, TRANSFERABILITY_TABLE
from tracking.runs import search_runs

SETTING = ("backbone", "strategy", "fraction")  # where sources compete (comparisons.FAMILIES["source"])
SCORES = ("logme", "h_score")
HEADERS = {"logme": "LogME", "h_score": "H-score", "kendall_tau_logme": "Kendall tau (LogME, MCC)", "p_logme": "p (LogME)",
           "kendall_tau_h_score": "Kendall tau (H-score, MCC)", "p_h_score": "p (H-score)", "top_logme_source": "LogME's top source",
           "top_source_in_best_tier": "LogME's top source in best tier"}  # the CSV-style names as a reader says them


def load_transferability(results: SuiteResults) -> pd.DataFrame | None:
    """The newest scores table any parent run of this suite logged (report source names), or None."""
    if results.client is None:
        return None
    parents = [r for r in search_runs(results.client, results.experiment_id, f"tags.`{STAGE_TAG}` = 'suite'")
               if r.data.tags.get(SUITE_TAG) == results.name]
    for run in sorted(parents, key=lambda r: r.info.start_time, reverse=True):
        table = results.artifact_table(run.info.run_id, f"{TRANSFERABILITY}/{TRANSFERABILITY_TABLE}")
        if table is not None and len(table):
            table = table.copy()
            table["source"] = table["source"].astype(str).map(source_name)
            return table
    return None


def _tau(x: pd.Series, y: pd.Series) -> tuple[float, float]:
    if len(x) < 2 or x.nunique() < 2 or y.nunique() < 2:
        return np.nan, np.nan
    found = stats.kendalltau(x, y)
    return float(found.statistic), float(found.pvalue)


def agreement(board: pd.DataFrame, scores: pd.DataFrame, compared: pd.DataFrame, primary: str) -> pd.DataFrame:
    """One line per setting with at least 2 scored sources: Kendall tau (LogME, H-score vs mean MCC), the best row,
    LogME's top source and whether it is in the best tier (see the module docstring)."""
    scored = scores.dropna(subset=["logme"])[["source", "backbone", *SCORES]]
    joined = board.merge(scored, on=["source", "backbone"], how="inner")
    records = []
    for key, group in joined.groupby(list(SETTING), sort=False):
        group = group.dropna(subset=["mcc_mean"])  # rows scored on external sets only (ensemble-folds) have no in-domain MCC
        if group["source"].nunique() < 2:
            continue
        best = group.loc[group["mcc_mean"].idxmax()]
        top = group.loc[group["logme"].idxmax()]
        tier = {row_label(best)}
        untested = set()
        for _, row in group.iterrows():
            if row_label(row) == row_label(best):
                continue
            found = compared[(compared["family"] == "source") & (compared["a"] == row_label(best)) & (compared["b"] == row_label(row))
                             & (compared["test_family"] == primary)] if len(compared) else pd.DataFrame()
            if not len(found):
                untested.add(row_label(row))
            elif not bool(found["significant"].iloc[0]):
                tier.add(row_label(row))
        in_tier = "yes" if row_label(top) in tier else ("untested" if row_label(top) in untested else "no")
        tau, p = _tau(group["logme"], group["mcc_mean"])
        tau_h, p_h = _tau(group["h_score"], group["mcc_mean"])
        records.append({"setting": ", ".join(f"{k}={v}" for k, v in zip(SETTING, key)), "sources": group["source"].nunique(),
                        "kendall_tau_logme": tau, "p_logme": p, "kendall_tau_h_score": tau_h, "p_h_score": p_h,
                        "best_row": row_label(best), "top_logme_source": top["source"], "top_source_in_best_tier": in_tier,
                        "best_tier": ", ".join(sorted(tier))})
    return pd.DataFrame(records)


def transferability_section(results: SuiteResults, board: pd.DataFrame, compared: pd.DataFrame, primary: str) -> Section:
    """The report's Transferability section (a note when the suite run logged no scores)."""
    section = Section("Transferability")
    scores = load_transferability(results)
    if scores is None:
        section.paragraphs.append("No transferability scores: suites run by `medtl benchmark` log LogME and H-score of every "
                                  "source x backbone before fine-tuning unless `transferability: false`.")
        return section
    section.paragraphs.append(
        "Computed before any fine-tuning, from frozen features of the target's training rows (first fold, or the official "
        "training rows), through the svm strategy's feature cache. LogME (You et al. 2021): the maximum Bayesian evidence "
        "per image of a linear model from features to labels, mean over classes; H-score (Bao et al. 2019): tr(cov(f)^-1 "
        "cov(E[f|y])), the between-class share of feature variance, with a Ledoit-Wolf shrunk covariance (Ibrahim et al. "
        "2022). Higher predicts better transfer; compare within a backbone only. LEEP is not computed: it needs the source "
        "model's own classifier outputs, which medtl's backbones do not keep.")
    shown = [c for c in ("source", "backbone", "logme", "h_score", "rows", "dimension", "tap", "scales", "error") if c in scores]
    section.tables.append(("Scores per source x backbone", scores[shown].rename(columns=HEADERS)))
    table = agreement(board, scores, compared, primary) if len(board) else pd.DataFrame()
    if table.empty:
        section.paragraphs.append("No setting has 2 or more scored sources with fine-tuned rows: nothing to check the scores against.")
        return section
    hits = (table["top_source_in_best_tier"] == "yes").sum()
    section.paragraphs.append(
        f"Against the fine-tuned rows, within each setting where sources compete: Kendall tau between the score and the rows' "
        f"mean MCC, and whether LogME's top source is in the best tier (the best row and the rows not significantly worse "
        f"by the {primary}, Holm-adjusted). LogME's choice was in the best tier in {hits} of {len(table)} setting(s).")
    section.tables.append(("Did the scores predict the order?", table.rename(columns=HEADERS)))
    return section
