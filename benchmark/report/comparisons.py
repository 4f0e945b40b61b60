"""Paired comparisons between leaderboard rows, Holm-adjusted, and the "which source / strategy wins" summaries.

    medtl report benchmark/suites/smoke.yaml

Two families, each Holm-corrected over all its comparisons for each test:
  source    rows that differ only in source, within one (backbone, strategy, fraction)
  strategy  rows that differ only in strategy, within one (source, backbone, fraction)
Two rows are paired on the (fold, seed) cells both finished. The primary test, whose adjusted
p-value decides a "wins" line, is the corrected resampled t-test on MCC for k-fold suites (test /
training ratio from the cells' own row counts) and McNemar's test on the shared test split's
predictions for suites on an official split (the same test images for every seed, so the
fold-level spread says nothing about test-set sampling).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from benchmark.report import statistics as st
from benchmark.report.results import SuiteResults

FAMILIES = {"source": ("backbone", "strategy", "fraction"), "strategy": ("source", "backbone", "fraction")}
NO_DIFFERENCE = "no significant difference"
NONE_MARKER = "—"  # an empty list in a table cell; not `none`, which was also a source's name
DEGENERATE = "degenerate: predicts one class"


def row_label(row) -> str:
    return f"{row['source']}/{row['backbone']}/{row['strategy']}" + (f"@{row['fraction']:g}" if row.get("fraction", 1.0) != 1.0 else "")


def _pooled_predictions(results: SuiteResults, a: pd.DataFrame, b: pd.DataFrame):
    """Predictions of a and b on the same test images: the shared cells of the first shared seed, folds pooled
    (each image is tested once per seed in k-fold), aligned by item. None without predictions or for multi-label."""
    seed = min(set(a["seed"]) & set(b["seed"]))
    frames = []
    for fold in sorted(set(a.loc[a["seed"] == seed, "fold"]) & set(b.loc[b["seed"] == seed, "fold"])):
        pa = results.predictions(a[(a["seed"] == seed) & (a["fold"] == fold)]["run_id"].iloc[0])
        pb = results.predictions(b[(b["seed"] == seed) & (b["fold"] == fold)]["run_id"].iloc[0])
        if pa is None or pb is None or "target" not in pa or "target" not in pb:
            return None
        frames.append(pa.merge(pb, on="item", suffixes=("_a", "_b")))
    return pd.concat(frames, ignore_index=True) if frames else None


def compare_rows(results: SuiteResults, a: pd.DataFrame, b: pd.DataFrame, metric: str = "mcc") -> list[st.Comparison]:
    """Every applicable test of row a against row b (cells of each as frames)."""
    pairs = a.merge(b, on=["fold", "seed"], suffixes=("_a", "_b"))
    out: list[st.Comparison] = []
    official = bool((pairs["folds_a"] == 0).all()) if len(pairs) else False
    if len(pairs) >= 2:
        if not official:
            ratio = (pairs["test_rows_a"] / pairs["train_rows_a"]).mean()
            if not np.isfinite(ratio) or ratio <= 0:
                k = int(pairs["folds_a"].iloc[0])
                ratio = 1.0 / max(k - 1, 1)
            out.append(st.corrected_ttest(pairs[f"{metric}_a"], pairs[f"{metric}_b"], float(ratio)))
        out.append(st.wilcoxon_test(pairs[f"{metric}_a"], pairs[f"{metric}_b"]))
    if len(pairs):
        shared = _pooled_predictions(results, a, b)
        if shared is not None and len(shared):
            out.append(st.mcnemar_test(shared["target_a"] == shared["predicted_a"], shared["target_b"] == shared["predicted_b"]))
            classes = [c[2:-2] for c in shared.columns if c.startswith("p:") and c.endswith("_a")]
            if len(classes) == 2:
                out.append(st.delong_test(shared[f"p:{classes[1]}_a"], shared[f"p:{classes[1]}_b"], shared["target_a"]))
    return out


def primary_test(cells: pd.DataFrame) -> str:
    return "McNemar" if len(cells) and bool((cells["folds"] == 0).all()) else "corrected t-test"


def comparisons(results: SuiteResults, board: pd.DataFrame) -> pd.DataFrame:
    """One row per (pair of rows, test): difference with CI, effect size, p and Holm-adjusted p within family and test."""
    cells = results.cells
    records = []
    for family, fixed in FAMILIES.items():
        for key, group in board.groupby(list(fixed), sort=False):
            rows = group.to_dict("records")
            for ra, rb in itertools.combinations(rows, 2):
                if ra["mcc_mean"] < rb["mcc_mean"]:
                    ra, rb = rb, ra  # a is the better row by mean MCC: differences read as its margin
                sel = lambda r: cells[(cells["source"] == r["source"]) & (cells["backbone"] == r["backbone"])  # noqa: E731
                                      & (cells["strategy"] == r["strategy"]) & (cells["fraction"] == r["fraction"])]
                for result in compare_rows(results, sel(ra), sel(rb)):
                    records.append({"family": family, "group": "/".join(map(str, key)), "a": row_label(ra), "b": row_label(rb),
                                    family + "_a": ra[family], family + "_b": rb[family], **result.as_dict()})
    table = pd.DataFrame(records)
    if table.empty:
        return table
    table["test_family"] = table["test"].str.replace(" (exact)", "", regex=False)
    table["p_holm"] = np.nan
    for _, index in table.groupby(["family", "test_family"]).groups.items():
        table.loc[index, "p_holm"] = st.holm(table.loc[index, "p_value"])
    table["significant"] = table["p_holm"] < st.ALPHA
    return table


def _is_degenerate(board: pd.DataFrame, label: str) -> bool:
    if "degenerate" not in board or "row" not in board:
        return False
    return bool(board.loc[board["row"] == label, "degenerate"].any())


def winners(board: pd.DataFrame, compared: pd.DataFrame, primary: str) -> pd.DataFrame:
    """Per group of each family: the best row by mean MCC, its margin over the runner-up with CI and Holm p, the verdict.

    Beating a row that is degenerate (predicts one class in every cell, `board["degenerate"]`) is said to be so: it
    shows only that the better row learnt something, not that its source or strategy is better."""
    records = []
    for family, fixed in FAMILIES.items():
        for key, group in board.groupby(list(fixed), sort=False):
            if group[family].nunique() < 2:
                continue
            ranked = group.sort_values("mcc_mean", ascending=False)
            best, second = ranked.iloc[0], ranked.iloc[1]
            found = compared[(compared["family"] == family) & (compared["a"] == row_label(best)) & (compared["b"] == row_label(second))
                             & (compared["test_family"] == primary)] if len(compared) else pd.DataFrame()
            record = {"question": f"which {family} wins", "within": ", ".join(f"{k}={v}" for k, v in zip(fixed, key)),
                      "best": best[family], "runner_up": second[family], "margin_mcc": best["mcc_mean"] - second["mcc_mean"]}
            if len(found):
                f = found.iloc[0]
                beaten = compared[(compared["family"] == family) & (compared["a"] == row_label(best)) & (compared["test_family"] == primary)
                                  & compared["significant"]]
                names = [name + (f" ({DEGENERATE})" if _is_degenerate(board, b) else "") for name, b in zip(beaten[family + "_b"], beaten["b"])]
                verdict = f"{best[family]} is better than {second[family]}" if f["significant"] else NO_DIFFERENCE
                if _is_degenerate(board, row_label(best)):
                    verdict = f"no finding: {best[family]} and {second[family]} are both {DEGENERATE}"
                elif _is_degenerate(board, row_label(second)):
                    verdict += (f"; but {second[family]} is {DEGENERATE} (MCC 0 ± 0): beating it shows only that "
                                f"{best[family]} learnt something")
                record.update(ci_low=f["low"], ci_high=f["high"], test=primary, p_holm=f["p_holm"], verdict=verdict,
                              significantly_better_than=", ".join(names) or NONE_MARKER)
            else:
                record.update(ci_low=np.nan, ci_high=np.nan, test=primary, p_holm=np.nan,
                              verdict="not tested (fewer than 2 shared cells)", significantly_better_than=NONE_MARKER)
            records.append(record)
    return pd.DataFrame(records)
